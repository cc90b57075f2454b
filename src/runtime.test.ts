import { test } from "node:test";
import fs from "node:fs";
import assert from "node:assert/strict";
import { loadConfig } from "./config";
import { createLogger } from "./logger";
import { createDeps, closeDeps } from "./runtime";
import { createDb, IDLE_IN_TRANSACTION_TIMEOUT_MS } from "./db/knex";
import { LONGEST_SEND_CHUNK_MS, SEND_CHUNK_QUEUE_DEADLINE_MS } from "./messages/delivery";

test("AUTOMATA_DB_POOL_MAX bounds a process's PostgreSQL pool: 6 concurrent queries share 3 connections", async () => {
  const config = loadConfig({ ...process.env, AUTOMATA_DB_POOL_MAX: "3" });
  const deps = await createDeps({ config, logger: createLogger("fatal", "runtime-test"), databaseUrl: process.env.DATABASE_URL!, temporalAddress: process.env.TEMPORAL_ADDRESS!, encryptionKey: process.env.AUTOMATA_ENCRYPTION_KEY! });
  try {
    const answers = await Promise.all(
      Array.from({ length: 6 }, async () => ((await deps.db.raw("select pg_backend_pid() as pid, pg_sleep(0.2)")) as { rows: Array<{ pid: number }> }).rows[0]!.pid),
    );
    assert.equal(new Set(answers).size, 3);
  } finally {
    await closeDeps(deps);
  }
});

test("a worker's pools give up lock waits after 2 minutes and every pool ends transactions idle for 5 minutes; the API's pool waits for locks under its statement timeout", async () => {
  const config = loadConfig(process.env);
  const base = { config, logger: createLogger("fatal", "runtime-test"), databaseUrl: process.env.DATABASE_URL!, temporalAddress: process.env.TEMPORAL_ADDRESS!, encryptionKey: process.env.AUTOMATA_ENCRYPTION_KEY! };
  const worker = await createDeps({ ...base, campaignPool: true });
  const api = await createDeps({ ...base, statementTimeoutMs: 30_000 });
  const show = async (db: typeof worker.db, setting: string) => ((await db.raw(`show ${setting}`)) as { rows: Array<Record<string, string>> }).rows[0]![setting];
  try {
    for (const db of [worker.db, worker.campaignDb!]) {
      assert.equal(await show(db, "lock_timeout"), "2min");
      assert.equal(await show(db, "idle_in_transaction_session_timeout"), "5min");
    }
    assert.equal(await show(api.db, "lock_timeout"), "0");
    assert.equal(await show(api.db, "idle_in_transaction_session_timeout"), "5min");
  } finally {
    await closeDeps(worker);
    await closeDeps(api);
  }
});

test("a transaction left idle past the idle-in-transaction timeout (a worker whose host died mid-send) is ended, and its locks with it", async () => {
  const stalled = createDb(process.env.DATABASE_URL!, 1, { idleInTransactionTimeoutMs: 500 });
  const other = createDb(process.env.DATABASE_URL!, 1);
  const key = Math.floor(Math.random() * 1e9);
  const trx = await stalled.transaction();
  try {
    await trx.raw("select pg_advisory_xact_lock(?)", [key]);
    const taken = async () => ((await other.raw("select pg_try_advisory_lock(?) as ok", [key])) as { rows: Array<{ ok: boolean }> }).rows[0]!.ok;
    assert.equal(await taken(), false, "held while the transaction is open");
    // The holder goes quiet, as a dead host's session does.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    assert.equal(await taken(), true, "PostgreSQL ended the idle transaction and released its lock");
    await other.raw("select pg_advisory_unlock(?)", [key]);
  } finally {
    await trx.rollback().catch(() => undefined /* its session is gone */);
    await stalled.destroy();
    await other.destroy();
  }
});

test("a campaign chunk's longest idle stretch (its queue deadline, then the requests under way) ends before PostgreSQL's idle-in-transaction limit", () => {
  assert.ok(SEND_CHUNK_QUEUE_DEADLINE_MS + LONGEST_SEND_CHUNK_MS < IDLE_IN_TRANSACTION_TIMEOUT_MS);
});

test("pooled PostgreSQL connections have TCP keepalive on, so one to a primary that vanished without a reset fails instead of waiting forever", async (t) => {
  if (process.platform !== "linux") return t.skip("reads the kernel's socket timers from /proc/net/tcp");
  const config = loadConfig(process.env);
  // The embedded server is reached over its Unix socket (`?host=`), where keepalive means nothing;
  // production connects over TCP, which the same server also listens on.
  const overTcp = new URL(process.env.DATABASE_URL!);
  overTcp.searchParams.delete("host");
  const deps = await createDeps({ config, logger: createLogger("fatal", "runtime-test"), databaseUrl: overTcp.toString(), temporalAddress: process.env.TEMPORAL_ADDRESS!, encryptionKey: process.env.AUTOMATA_ENCRYPTION_KEY!, campaignPool: true });
  try {
    for (const db of [deps.db, deps.campaignDb!]) {
      const connection = (await db.client.acquireConnection()) as { connection: { stream: { localPort: number } } };
      try {
        // Column 6 of /proc/net/tcp is "timer:expiry"; timer 02 is the keepalive timer, which the
        // kernel arms on an idle socket only when SO_KEEPALIVE is set.
        // Matched by both ends and the established state (01): Linux may reuse a local port for
        // another destination, and TIME_WAIT rows are listed too.
        const hex = (n: number) => n.toString(16).toUpperCase().padStart(4, "0");
        const port = hex(connection.connection.stream.localPort);
        const serverPort = hex(Number(overTcp.port || 5432));
        const timers = ["/proc/net/tcp", "/proc/net/tcp6"]
          .flatMap((file) => fs.readFileSync(file, "utf8").split("\n").slice(1))
          .map((line) => line.trim().split(/\s+/))
          .filter((fields) => fields[1]?.endsWith(`:${port}`) && fields[2]?.endsWith(`:${serverPort}`) && fields[3] === "01")
          .map((fields) => fields[5]!);
        assert.equal(timers.length, 1, "the connection's socket is listed once");
        const [timer, expiryJiffies] = timers[0]!.split(":");
        assert.equal(timer, "02", "keepalive timer armed");
        assert.ok(parseInt(expiryJiffies!, 16) > 0);
      } finally {
        await db.client.releaseConnection(connection);
      }
    }
  } finally {
    await closeDeps(deps);
  }
});

test("a production process writes unbound (v1) sealed values unless AUTOMATA_SEAL_BOUND=on, so processes of a release before binding read them during a rolling deploy; it reads bound ones either way", async () => {
  const env = { ...process.env };
  delete env.AUTOMATA_SEAL_BOUND;
  const base = { logger: createLogger("fatal", "runtime-test"), databaseUrl: process.env.DATABASE_URL!, temporalAddress: process.env.TEMPORAL_ADDRESS!, encryptionKey: process.env.AUTOMATA_ENCRYPTION_KEY! };
  const unset = await createDeps({ ...base, config: loadConfig(env) });
  const on = await createDeps({ ...base, config: loadConfig({ ...env, AUTOMATA_SEAL_BOUND: "on" }) });
  try {
    assert.match(unset.secrets.encrypt("ok-token", "device-token:app"), /^v1:/);
    assert.match(on.secrets.encrypt("ok-token", "device-token:app"), /^v2:/);
    assert.equal(unset.secrets.decrypt(on.secrets.encrypt("ok-token", "device-token:app"), "device-token:app"), "ok-token");
  } finally {
    await closeDeps(unset);
    await closeDeps(on);
  }
});
