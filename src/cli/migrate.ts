import path from "node:path";
import { loadConfig } from "../config";
import { createLogger } from "../logger";
import { createDb, migrateLatest } from "../db/knex";
import { startEmbeddedPostgres } from "../infra/postgres";

/**
 * `npm run migrate` (and the production release command `node dist/src/cli/migrate.js`): applies
 * pending migrations to DATABASE_URL, or to the embedded PostgreSQL under AUTOMATA_HOME.
 */
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.LOG_LEVEL);
  const embedded = config.DATABASE_URL
    ? undefined
    : await startEmbeddedPostgres({ dataDir: path.join(config.homeDir, "postgres"), port: config.AUTOMATA_PG_PORT, database: "automata_signal", logger });
  const db = createDb(config.DATABASE_URL ?? embedded!.url, 2);
  try {
    const applied = await migrateLatest(db);
    console.log(applied.length > 0 ? `applied ${applied.length} migration(s): ${applied.join(", ")}` : "database is up to date");
  } finally {
    await db.destroy();
    await embedded?.stop();
  }
}

main().catch((error: unknown) => {
  console.error("migration failed:", error);
  process.exit(1);
});
