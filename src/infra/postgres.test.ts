import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import net from "node:net";
import path from "node:path";
import { execFile, spawn } from "node:child_process";
import pg from "pg";
import { createLogger } from "../logger";
import { startEmbeddedPostgres, unixSocketDir } from "./postgres";
import { isAlive } from "./process-info";
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

/** The client's address as the server sees it: null over a Unix socket. */
async function clientAddress(url: string): Promise<string | null> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query("select inet_client_addr()::text as address")).rows[0].address as string | null;
  } finally {
    await client.end();
  }
}

test("the embedded server is reached over its Unix socket, also by a second start that shares it; TCP stays open", { timeout: 120_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "automata-pg-socket-"));
  fs.chmodSync(dir, 0o755);
  const port = await freePort();
  const server = await startEmbeddedPostgres({ dataDir: dir, port, database: "sock", logger });
  try {
    assert.equal(new URL(server.url).searchParams.get("host"), path.join(dir, "cluster"));
    assert.equal(await clientAddress(server.url), null, "connected over the socket");
    const tcp = new URL(server.url);
    tcp.search = "";
    assert.equal(await clientAddress(tcp.toString()), "127.0.0.1/32", "the TCP port still answers");
    const shared = await startEmbeddedPostgres({ dataDir: dir, port: await freePort(), database: "sock", logger });
    assert.equal(await clientAddress(shared.url), null, "the sharing process found the socket in postmaster.pid");
  } finally {
    await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("a PostgreSQL that will not start says why (here: its port is taken), not just that its process exited", { timeout: 120_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "automata-pg-busy-"));
  fs.chmodSync(dir, 0o755);
  const port = await freePort();
  const holder = net.createServer();
  await new Promise<void>((resolve) => holder.listen(port, "127.0.0.1", resolve));
  try {
    await assert.rejects(startEmbeddedPostgres({ dataDir: dir, port, database: "busy", logger }), (error: Error) => {
      assert.match(error.message, new RegExp(`did not start on port ${port}: could not bind .*Address already in use`));
      return true;
    });
  } finally {
    holder.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("a cluster directory too deep for a socket path gets no socket (TCP only)", () => {
  assert.equal(unixSocketDir("/srv/automata/postgres/cluster", 5432), "/srv/automata/postgres/cluster");
  const deep = `/srv/${"d".repeat(90)}/cluster`;
  assert.equal(unixSocketDir(deep, 5432), undefined);
  // 84 characters but 110 bytes: PostgreSQL would refuse the socket and not start at all.
  const korean = "/Users/kim/Documents/프로젝트/모바일푸시알림서버/automata-signal/.automata/postgres";
  assert.ok(`${korean}/.s.PGSQL.5433`.length <= 103);
  assert.equal(unixSocketDir(korean, 5433), undefined);
});

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

test("stop returns when PostgreSQL already exited on its own (Ctrl-C reaches it first), and removes an ephemeral cluster", { timeout: 120_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "automata-pg-gone-"));
  fs.chmodSync(dir, 0o755);
  const server = await startEmbeddedPostgres({ dataDir: dir, port: await freePort(), database: "gone", logger, ephemeral: true });
  const pid = Number(fs.readFileSync(path.join(dir, "cluster", "postmaster.pid"), "utf8").split("\n")[0]);
  try {
    // What the terminal's Ctrl-C does to every process of the group.
    process.kill(pid, "SIGINT");
    while (isAlive(pid)) await new Promise((r) => setTimeout(r, 50));
    const outcome = await Promise.race([server.stop().then(() => "stopped"), new Promise((r) => setTimeout(() => r("still waiting after 10 s"), 10_000))]);
    assert.equal(outcome, "stopped");
    assert.equal(fs.existsSync(path.join(dir, "cluster")), false);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** Starts the holder in a process group of its own, as a shell starts a foreground job; answers its postmaster's pid. */
async function startHolderJob(dir: string, port: number): Promise<{ holder: ReturnType<typeof spawn>; postmaster: number }> {
  const holder = spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "test/support/embedded-postgres-holder.ts"), dir, String(port), "detached"], { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"], detached: true });
  await new Promise<void>((resolve, reject) => {
    holder.stdout!.on("data", (chunk: Buffer) => chunk.toString().includes("ready") && resolve());
    holder.on("exit", (code) => reject(new Error(`holder exited ${code}`)));
  });
  return { holder, postmaster: Number(fs.readFileSync(path.join(dir, "cluster", "postmaster.pid"), "utf8").split("\n")[0]) };
}

test("started detached, PostgreSQL is out of reach of the Ctrl-C a terminal sends its starter's process group, and goes when its starter exits", { timeout: 120_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "automata-pg-detached-"));
  fs.chmodSync(dir, 0o755);
  const port = await freePort();
  const postmasters: number[] = [];
  try {
    const first = await startHolderJob(dir, port);
    postmasters.push(first.postmaster);
    const url = `postgres://postgres:${encodeURIComponent(fs.readFileSync(path.join(dir, "password"), "utf8").trim())}@127.0.0.1:${port}/held`;
    // What the terminal's Ctrl-C does: SIGINT to every process of the foreground group. The holder
    // has no handler and dies of it; npm start's handler would drain the worker and then stop the server.
    process.kill(-first.holder.pid!, "SIGINT");
    await new Promise((r) => first.holder.once("exit", r));
    assert.ok(isAlive(first.postmaster), "PostgreSQL did not get the group's SIGINT");
    assert.ok(await answers(url), "and still serves");

    // A starter that exits (a crash handler's process.exit) stops the server it started.
    process.kill(first.postmaster, "SIGINT");
    while (isAlive(first.postmaster)) await new Promise((r) => setTimeout(r, 50));
    const second = await startHolderJob(dir, port);
    postmasters.push(second.postmaster);
    second.holder.kill("SIGTERM");
    await new Promise((r) => second.holder.once("exit", r));
    for (let waited = 0; waited < 10_000 && isAlive(second.postmaster); waited += 50) await new Promise((r) => setTimeout(r, 50));
    assert.ok(!isAlive(second.postmaster), "the server went with the process that started it");
  } finally {
    for (const pid of postmasters) if (isAlive(pid)) process.kill(pid, "SIGINT");
    for (const pid of postmasters) while (isAlive(pid)) await new Promise((r) => setTimeout(r, 50));
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
