import { test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { spawn } from "node:child_process";
import knex from "knex";
import { freePort } from "../src/infra/ports";
import { startEmbeddedPostgres } from "../src/infra/postgres";
import { createLogger } from "../src/logger";

// `npm start` on a data directory it created before, started with another AUTOMATA_ENCRYPTION_KEY:
// it must refuse (every token would be unreadable) and must not leave its embedded PostgreSQL and
// Temporal running behind it, or the next `npm start` finds their ports taken.

const ROOT = path.resolve(__dirname, "..");

interface Run {
  code: number | null;
  output: string;
}

/** Runs `src/dev.ts` until it prints `until` (then runs `then`, by default one SIGINT) or exits by itself. */
function runDev(env: NodeJS.ProcessEnv, until?: RegExp, then?: () => void): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", "src/dev.ts"], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    let signalled = false;
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      // Once, as one Ctrl-C: a second one is the "stop now" a user presses when shutdown hangs.
      if (until && !signalled && until.test(output)) {
        signalled = true;
        if (then) then();
        else child.kill("SIGINT");
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("exit", (code) => resolve({ code, output }));
  });
}

function portAcceptsConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: "127.0.0.1" });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/**
 * A data directory and free ports of its own for one `npm start` (embedded PostgreSQL and Temporal
 * included), so it never meets the test run's servers or a developer's own `npm start`.
 */
async function ownDevEnvironment(prefix: string) {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.chmodSync(home, 0o755);
  const ports = { PORT: await freePort(), AUTOMATA_PG_PORT: await freePort(), TEMPORAL_PORT: await freePort(), TEMPORAL_UI_PORT: await freePort(), AUTOMATA_METRICS_PORT: await freePort() };
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    AUTOMATA_HOME: home,
    LOG_LEVEL: "warn",
    // Not the default 127.0.0.1:9465, which a developer's own `npm start` may hold.
    AUTOMATA_TEMPORAL_METRICS_ADDRESS: `127.0.0.1:${await freePort()}`,
    ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])),
  };
  // npm start makes its own key under AUTOMATA_HOME; the test runner's key must not leak in.
  delete env.AUTOMATA_ENCRYPTION_KEY;
  delete env.DATABASE_URL;
  delete env.TEMPORAL_ADDRESS;
  return { home, ports, env };
}

test("npm start with another encryption key than its data directory's refuses to start and stops its PostgreSQL and Temporal", { timeout: 240_000 }, async () => {
  const { home, ports, env } = await ownDevEnvironment("automata-dev-start-");
  try {
    const first = await runDev(env, /Press Ctrl-C to stop/);
    assert.equal(first.code, 0, first.output);

    const wrong = await runDev({ ...env, AUTOMATA_ENCRYPTION_KEY: crypto.randomBytes(32).toString("base64") });
    assert.equal(wrong.code, 1, wrong.output);
    assert.match(wrong.output, /AUTOMATA_ENCRYPTION_KEY is not the key this database's device tokens and provider credentials are encrypted with/);
    assert.equal(await portAcceptsConnections(ports.AUTOMATA_PG_PORT), false, "embedded PostgreSQL was stopped");
    assert.equal(await portAcceptsConnections(ports.TEMPORAL_PORT), false, "the Temporal dev server was stopped");

    // And the right key (the generated one) still starts.
    const again = await runDev(env, /Press Ctrl-C to stop/);
    assert.equal(again.code, 0, again.output);

    // A migrate killed mid-run left knex's lock set: the refusal says how to clear it, and stops what it started.
    const postgres = await startEmbeddedPostgres({ dataDir: path.join(home, "postgres"), port: ports.AUTOMATA_PG_PORT, database: "automata_signal", logger: createLogger("error", "dev-start-test") });
    const db = knex({ client: "pg", connection: postgres.url });
    try {
      await db("knex_migrations_lock").update({ is_locked: 1 });
    } finally {
      await db.destroy();
      await postgres.stop();
    }
    const locked = await runDev(env);
    assert.equal(locked.code, 1, locked.output);
    assert.match(locked.output, /did not start: the migration lock is set.*npm run migrate -- --unlock/);
    assert.doesNotMatch(locked.output, /\n\s+at /, "a refusal that says what to do needs no stack trace");
    assert.equal(await portAcceptsConnections(ports.AUTOMATA_PG_PORT), false, "embedded PostgreSQL was stopped");
    assert.equal(await portAcceptsConnections(ports.TEMPORAL_PORT), false, "the Temporal dev server was stopped");
  } finally {
    fs.rmSync(home, { recursive: true, force: true });
  }
});

test("a second npm start while one runs is refused up front, naming the port and the setting that moves it; the first keeps running", { timeout: 240_000 }, async () => {
  const { home, ports, env } = await ownDevEnvironment("automata-dev-twice-");
  const first = spawn(process.execPath, ["--import", "tsx", "src/dev.ts"], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  let firstOutput = "";
  const firstExit = new Promise<number | null>((resolve) => first.on("exit", resolve));
  const running = new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      firstOutput += chunk.toString();
      if (/Press Ctrl-C to stop/.test(firstOutput)) resolve();
    };
    first.stdout.on("data", onData);
    first.stderr.on("data", onData);
    void firstExit.then((code) => reject(new Error(`the first start exited (${code}): ${firstOutput}`)));
    // Well inside the test's timeout, so `finally` still stops it (and its PostgreSQL and Temporal).
    setTimeout(() => reject(new Error(`the first start was not running after 150 s: ${firstOutput}`)), 150_000).unref();
  });
  try {
    await running;
    const second = await runDev(env);
    assert.equal(second.code, 1, second.output);
    assert.match(second.output, new RegExp(`Port ${ports.PORT} \\(the API\\) is already in use: is Automata-Signal already running .*set PORT to use another port`));
    assert.doesNotMatch(second.output, /os error 98|\n\s+at /, "a message, not the SDK's error and a stack trace");
    const health = await fetch(`http://127.0.0.1:${ports.PORT}/healthz`);
    assert.equal(health.status, 200, "the first start still answers");
  } finally {
    first.kill("SIGINT");
    const forceStop = setTimeout(() => first.kill("SIGKILL"), 60_000);
    const code = await firstExit;
    clearTimeout(forceStop);
    assert.equal(code, 0, firstOutput);
    fs.rmSync(home, { recursive: true, force: true });
  }
});

test("Ctrl-C while npm start is still starting stops what it started and exits", { timeout: 240_000 }, async () => {
  const { home, ports, env } = await ownDevEnvironment("automata-dev-abort-");
  try {
    // SIGINT as soon as it says it is starting: PostgreSQL and Temporal are coming up.
    const run = await Promise.race([
      runDev(env, /Automata-Signal: starting/),
      new Promise<Run>((resolve) => setTimeout(() => resolve({ code: -1, output: "still running 120 s after SIGINT" }), 120_000)),
    ]);
    assert.equal(run.code, 130, run.output);
    assert.doesNotMatch(run.output, /Press Ctrl-C to stop/, "it did not go on starting");
    assert.equal(await portAcceptsConnections(ports.AUTOMATA_PG_PORT), false, "embedded PostgreSQL was stopped");
    assert.equal(await portAcceptsConnections(ports.TEMPORAL_PORT), false, "the Temporal dev server was stopped");
  } finally {
    fs.rmSync(home, { recursive: true, force: true });
  }
});

test("npm start whose Temporal dev server dies stops the whole platform at once, saying why, instead of accepting messages it can never send", { timeout: 240_000 }, async () => {
  const { home, ports, env } = await ownDevEnvironment("automata-dev-temporal-dies-");
  try {
    const killed = Date.now();
    const run = await Promise.race([
      // The launcher keeps the dev server's pid beside its database.
      runDev(env, /Press Ctrl-C to stop/, () => process.kill(Number(fs.readFileSync(path.join(home, "temporal", "temporal.db.pid"), "utf8")), "SIGKILL")),
      new Promise<Run>((resolve) => setTimeout(() => resolve({ code: -1, output: "still running 150 s after Temporal was killed" }), 150_000)),
    ]);
    assert.equal(run.code, 1, run.output);
    assert.match(run.output, /the Temporal dev server exited \(exit SIGKILL/);
    assert.ok(Date.now() - killed < 150_000);
    assert.equal(await portAcceptsConnections(ports.AUTOMATA_PG_PORT), false, "embedded PostgreSQL was stopped");
    assert.equal(await portAcceptsConnections(ports.PORT), false, "the API was stopped");
  } finally {
    fs.rmSync(home, { recursive: true, force: true });
  }
});
