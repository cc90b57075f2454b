import fs from "node:fs";
import path from "node:path";
import knexFactory, { type Knex } from "knex";
import { Model } from "objection";
import pg from "pg";

// bigint counters (ledger balances, counts) come back as strings by default; they fit in a double
// for every value this product produces, and numbers are what the API returns.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value));
pg.types.setTypeParser(pg.types.builtins.NUMERIC, (value) => Number(value));

/**
 * Waits for a PostgreSQL advisory lock on `name` (hashed to the lock's 64-bit key) that the
 * transaction holds until it ends: callers with the same name take turns, across processes.
 */
export async function lockForTransaction(trx: Knex.Transaction, name: string): Promise<void> {
  await trx.raw("select pg_advisory_xact_lock(hashtextextended(?, 0))", [name]);
}

/**
 * Opens a knex pool on PostgreSQL and binds objection models to it. `statementTimeoutMs` (sent as
 * a start-up parameter, so it costs no round trip) makes PostgreSQL cancel any statement of this
 * pool that runs longer; 0 or absent: none.
 */
export function createDb(url: string, poolMax: number, statementTimeoutMs = 0): Knex {
  const db = knexFactory({
    client: "pg",
    connection: { connectionString: url, application_name: "automata-signal", ...(statementTimeoutMs > 0 ? { statement_timeout: statementTimeoutMs } : {}) },
    pool: { min: 0, max: poolMax },
    acquireConnectionTimeout: 10_000,
    // knex's default prefixes a failed query's error message with the SQL and its bound values
    // filled in (titles, external ids, tags), which then reach every log line of that error.
    compileSqlOnError: false,
  });
  Model.knex(db);
  return db;
}

/**
 * Lists migrations by base name (no extension), so a database migrated from the TypeScript sources
 * (`npm start`) and later from compiled JavaScript (production) sees the same history.
 */
class ExtensionlessMigrationSource implements Knex.MigrationSource<string> {
  private readonly directory = path.resolve(__dirname, "../../migrations");
  private readonly extension = __filename.endsWith(".ts") ? ".ts" : ".js";

  async getMigrations(): Promise<string[]> {
    return fs
      .readdirSync(this.directory)
      .filter((file) => file.endsWith(this.extension) && !file.endsWith(".d.ts") && !file.endsWith(".test.ts"))
      .map((file) => file.slice(0, -this.extension.length))
      .sort();
  }

  getMigrationName(migration: string): string {
    return migration;
  }

  async getMigration(migration: string): Promise<Knex.Migration> {
    return require(path.join(this.directory, migration + this.extension)) as Knex.Migration;
  }
}

/**
 * Migration settings shared by `npm run migrate`, `npm start` and the production release command.
 * Applied migrations this code does not know are tolerated (knex would call the directory
 * corrupt): they are a newer release's, whose schema the release before it is written to run on,
 * so redeploying the previous image is a rollback that needs no `--down`. `migrate` lists them.
 */
export function migrationConfig(): Knex.MigratorConfig {
  return { migrationSource: new ExtensionlessMigrationSource(), tableName: "knex_migrations", disableMigrationsListValidation: true };
}

/** Migration names by state; `unknown` = applied by a newer release, no file in this one. */
export interface MigrationStatus {
  applied: string[];
  pending: string[];
  unknown: string[];
}

/** Where the database stands against this release's migrations (one read of knex_migrations). */
export async function migrationStatus(db: Knex): Promise<MigrationStatus> {
  const config = migrationConfig();
  const source = config.migrationSource!;
  const known = new Set((await source.getMigrations([])).map((m) => source.getMigrationName(m)));
  const [completed, pending] = (await db.migrate.list(config)) as [Array<{ name: string }>, unknown[]];
  const applied = completed.map((m) => m.name);
  return { applied, pending: pending.map((m) => source.getMigrationName(m)), unknown: applied.filter((name) => !known.has(name)) };
}

/**
 * Applies every pending migration. knex's lock row keeps two runs from migrating at once: the
 * second fails with `MigrationLocked` rather than waiting, and a run killed mid-way leaves the lock
 * set until `migrate --unlock` (see {@link freeMigrationLock}).
 */
export async function migrateLatest(db: Knex): Promise<string[]> {
  const [, applied] = (await db.migrate.latest(migrationConfig())) as [number, string[]];
  return applied;
}

/**
 * Clears knex's migration lock, which a migrate process killed mid-run (SIGKILL, OOM, a lost
 * machine) leaves set when its batch held a migration that runs outside a transaction; every later
 * migrate then fails with `MigrationLocked`. Only for when no migrate is running.
 */
export async function freeMigrationLock(db: Knex): Promise<void> {
  await db.migrate.forceFreeMigrationsLock(migrationConfig());
}
