import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { execFile } from "node:child_process";
import pg from "pg";
import { createLogger } from "../logger";
import { startEmbeddedPostgres } from "./postgres";
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
