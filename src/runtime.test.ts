import { test } from "node:test";
import assert from "node:assert/strict";
import { loadConfig } from "./config";
import { createLogger } from "./logger";
import { createDeps, closeDeps } from "./runtime";

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
