import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { execFile, spawn } from "node:child_process";
import pg from "pg";
import { createLogger } from "../logger";
import { isAlive, startEmbeddedPostgres } from "./postgres";
import { freePort } from "./ports";

const ROOT = path.resolve(__dirname, "..", "..");
const logger = createLogger("error", "postgres-test");

async function answers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url });
  try {
    await client.connect();
    return (await client.query("select 1 as one")).rows[0]?.one === 1;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

test("`npm run migrate` while `npm start` runs shares its embedded PostgreSQL instead of stopping it", { timeout: 120_000 }, async () => {
  // The layout `npm start` and the migrate CLI both use: <AUTOMATA_HOME>/postgres.
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "automata-pg-shared-"));
  fs.chmodSync(home, 0o755);
  const running = await startEmbeddedPostgres({ dataDir: path.join(home, "postgres"), port: await freePort(), database: "automata_signal", logger });
  try {
    assert.ok(await answers(running.url));
    // Another process on the same home, told a different port: it must find the running server.
    const env: NodeJS.ProcessEnv = { ...process.env, AUTOMATA_HOME: home, AUTOMATA_PG_PORT: String(await freePort()), LOG_LEVEL: "error" };
    delete env.DATABASE_URL;
    const cli = await new Promise<{ status: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, ["--import", "tsx", path.join(ROOT, "src/cli/migrate.ts"), "--status"], { cwd: ROOT, env, encoding: "utf8", timeout: 60_000 }, (error, stdout, stderr) =>
        resolve({ status: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
    assert.equal(cli.status, 0, cli.stderr);
    assert.match(cli.stdout, /^pending {2}20261122000100_core$/m, "it read the running server's (unmigrated) database");
    assert.ok(await answers(running.url), "the first process's database is still up after the second one exited");

    // The same in one process: a second start shares, and its stop leaves the server running.
    const second = await startEmbeddedPostgres({ dataDir: path.join(home, "postgres"), port: await freePort(), database: "other", logger });
    assert.ok(await answers(second.url));
    await second.stop();
    assert.ok(await answers(running.url));
  } finally {
    await running.stop();
    fs.rmSync(home, { recursive: true, force: true });
  }
});

test("a postmaster orphaned by a SIGKILLed start is stopped and replaced; a pid file naming another program is removed", { timeout: 120_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "automata-pg-orphan-"));
  fs.chmodSync(dir, 0o755);
  const holder = spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "test/support/embedded-postgres-holder.ts"), dir, String(await freePort())], { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
  const pidFile = path.join(dir, "cluster", "postmaster.pid");
  let sleeper: ReturnType<typeof spawn> | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      holder.stdout!.on("data", (chunk: Buffer) => chunk.toString().includes("ready") && resolve());
      holder.on("exit", (code) => reject(new Error(`holder exited ${code}`)));
    });
    const orphan = Number(fs.readFileSync(pidFile, "utf8").split("\n")[0]);
    holder.kill("SIGKILL");
    await new Promise((r) => holder.once("exit", r));
    assert.ok(isAlive(orphan), "the postmaster outlived its SIGKILLed parent");

    const replacement = await startEmbeddedPostgres({ dataDir: dir, port: await freePort(), database: "held", logger });
    try {
      assert.ok(!isAlive(orphan), "the orphan was stopped");
      assert.ok(await answers(replacement.url));
    } finally {
      await replacement.stop();
    }

    // A pid file left behind whose pid now belongs to another program: removed, that program untouched.
    sleeper = spawn("sleep", ["60"]);
    fs.writeFileSync(pidFile, `${sleeper.pid}\n${path.join(dir, "cluster")}\n0\n5432\n\n127.0.0.1\n0 0\nready\n`);
    const fresh = await startEmbeddedPostgres({ dataDir: dir, port: await freePort(), database: "held", logger });
    try {
      assert.ok(await answers(fresh.url));
      assert.ok(isAlive(sleeper.pid!), "the unrelated process was left alone");
    } finally {
      await fresh.stop();
    }
  } finally {
    holder.kill("SIGKILL");
    sleeper?.kill("SIGKILL");
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
