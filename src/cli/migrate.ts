import path from "node:path";
import { loadConfig } from "../config";
import { createLogger } from "../logger";
import { createDb, freeMigrationLock, isMigrationLocked, MIGRATION_LOCKED_HINT, migrateLatest, migrationConfig, migrationStatus } from "../db/knex";
import { startEmbeddedPostgres } from "../infra/postgres";

/** Says what to do when knex found its migration lock set, and answers undefined; rethrows anything else. */
function undefinedIfLocked(error: unknown): undefined {
  if (!isMigrationLocked(error)) throw error;
  console.error(MIGRATION_LOCKED_HINT);
  return undefined;
}

const USAGE = `usage: migrate [--status | --down | --unlock]

  (none)    apply pending migrations to DATABASE_URL (or, outside production, the embedded
            PostgreSQL under AUTOMATA_HOME)
  --status  list applied, pending and unknown (a newer release's) migrations
  --down    roll back the newest applied migration (refused while a newer release's are applied)
  --unlock  clear the migration lock a migrate killed mid-run left set (only while none runs)`;

/**
 * `npm run migrate` (and the production release command `node dist/src/cli/migrate.js`): applies
 * pending migrations to DATABASE_URL, or (not with NODE_ENV=production) to the embedded PostgreSQL
 * under AUTOMATA_HOME.
 * `--status` lists applied, pending and unknown (a newer release's) migrations; `--down` rolls
 * back the newest applied one (docs/deployment.md, "Rolling a release back"); `--unlock` clears
 * the lock a killed run left.
 */
async function main(): Promise<number> {
  const mode = process.argv[2] ?? "--latest";
  // Asked for, the usage is an answer (stdout, exit 0); only a wrong command line is an error (2).
  if ((mode === "--help" || mode === "-h") && process.argv.length === 3) {
    console.log(USAGE);
    return 0;
  }
  if (!["--latest", "--status", "--down", "--unlock"].includes(mode) || process.argv.length > 3) {
    console.error(USAGE);
    return 2;
  }
  const config = loadConfig();
  // The release command with its DATABASE_URL secret missing would otherwise "succeed" against a
  // throwaway embedded database while the real one stays unmigrated.
  if (!config.DATABASE_URL && process.env.NODE_ENV === "production") {
    console.error("DATABASE_URL is required in production (NODE_ENV=production): without it migrate would migrate an embedded database of its own");
    return 2;
  }
  const logger = createLogger(config.LOG_LEVEL);
  const embedded = config.DATABASE_URL
    ? undefined
    : await startEmbeddedPostgres({ dataDir: path.join(config.homeDir, "postgres"), port: config.AUTOMATA_PG_PORT, database: "automata_signal", logger });
  const db = createDb(config.DATABASE_URL ?? embedded!.url, 2);
  try {
    if (mode === "--unlock") {
      await freeMigrationLock(db);
      console.log("migration lock cleared");
      return 0;
    }
    const { applied, pending, unknown } = await migrationStatus(db);
    if (mode === "--status") {
      for (const name of applied) console.log(`${unknown.includes(name) ? "unknown" : "applied"}  ${name}`);
      for (const name of pending) console.log(`pending  ${name}`);
    } else if (mode === "--down") {
      // knex would undo this release's newest migration and leave the newer ones above it.
      if (unknown.length > 0) {
        console.error(`refusing to roll back: newer migrations are applied (${unknown.join(", ")}); run --down with the release that has them`);
        return 1;
      }
      const result = await (db.migrate.down(migrationConfig()) as Promise<[number, string[]]>).catch(undefinedIfLocked);
      if (result === undefined) return 1;
      const [, undone] = result;
      console.log(undone.length > 0 ? `rolled back ${undone.join(", ")}` : "no migration to roll back");
    } else {
      if (unknown.length > 0) console.warn(`warning: applied by a newer release, not known to this one (left as they are): ${unknown.join(", ")}`);
      const migrated = await migrateLatest(db).catch(undefinedIfLocked);
      if (migrated === undefined) return 1;
      console.log(migrated.length > 0 ? `applied ${migrated.length} migration(s): ${migrated.join(", ")}` : "database is up to date");
    }
    return 0;
  } finally {
    await db.destroy();
    await embedded?.stop();
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error("migration failed:", error);
    process.exit(1);
  },
);
