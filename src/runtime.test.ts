import { test } from "node:test";
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
