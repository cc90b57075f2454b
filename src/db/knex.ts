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
 * How long PostgreSQL lets a session sit idle inside a transaction before ending it. A worker whose
 * host died mid-send (VM lost, partition) left a transaction open with its message rows locked, and
 * PostgreSQL only noticed through TCP keepalive: about 2 h 11 min on Linux defaults, while every
 * retry of those messages, their cancels and receipts waited on the rows. Far above the longest
 * legitimate pause, a campaign chunk waiting for its providers (a few rounds of LONGEST_SEND_CHUNK_MS
 * when its requests queue for connections).
 */
export const IDLE_IN_TRANSACTION_TIMEOUT_MS = 5 * 60_000;

/**
 * Longest a worker statement waits for a row or advisory lock. Nothing in a worker waits that long
 * for a live holder (the longest is a chunk's provider round); past it the activity fails and
 * Temporal retries it, instead of a query abandoned by its timed-out activity holding a pooled
 * connection until the holder ends.
 */
export const WORKER_LOCK_TIMEOUT_MS = 2 * 60_000;

/**
 * Idle time after which the kernel starts probing a pooled connection. A primary that vanished
 * without a reset (VM lost, failover behind a moved address) otherwise leaves a connection waiting
 * for an answer to a query it had acknowledged, or idle in the pool, with nothing ever failing it.
 * With probes the socket fails after about 11 minutes on Linux defaults (9 probes, 75 s apart:
 * Node 20 cannot shorten them), and the pool drops it. Writes nobody acknowledges are bounded by
 * TCP retransmission instead (about 15 minutes).
 */
export const TCP_KEEPALIVE_IDLE_MS = 10_000;

/** Per-session limits of a pool, sent as start-up parameters (no round trip); 0 or absent: none. */
export interface SessionLimits {
  /** PostgreSQL cancels any statement that runs longer (the API's pool). */
  statementTimeoutMs?: number;
  /** A statement waiting longer for a lock fails with 55P03 (the workers' pools). */
  lockTimeoutMs?: number;
  /** Default {@link IDLE_IN_TRANSACTION_TIMEOUT_MS}. */
  idleInTransactionTimeoutMs?: number;
}

/** Opens a knex pool on PostgreSQL with these session limits and binds objection models to it. */
export function createDb(url: string, poolMax: number, limits: SessionLimits = {}): Knex {
  const { statementTimeoutMs = 0, lockTimeoutMs = 0, idleInTransactionTimeoutMs = IDLE_IN_TRANSACTION_TIMEOUT_MS } = limits;
  const db = knexFactory({
    client: "pg",
    connection: {
      connectionString: url,
      application_name: "automata-signal",
      keepAlive: true,
      keepAliveInitialDelayMillis: TCP_KEEPALIVE_IDLE_MS,
      ...(statementTimeoutMs > 0 ? { statement_timeout: statementTimeoutMs } : {}),
      ...(lockTimeoutMs > 0 ? { lock_timeout: lockTimeoutMs } : {}),
      ...(idleInTransactionTimeoutMs > 0 ? { idle_in_transaction_session_timeout: idleInTransactionTimeoutMs } : {}),
    },
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
 * Applies every pending migration. knex's lock row keeps two runs from migrating at once: when
 * the pending ones all run in one transaction the second waits for the first, otherwise it fails
 * with `MigrationLocked`, and a run killed mid-way then leaves the lock set until
 * `migrate --unlock` (see {@link freeMigrationLock}).
 */
export async function migrateLatest(db: Knex): Promise<string[]> {
  const [, applied] = (await db.migrate.latest(migrationConfig())) as [number, string[]];
  return applied;
}

/** What to do when knex finds its migration lock set; `npm start` and the migrate CLI say the same. */
export const MIGRATION_LOCKED_HINT =
  "the migration lock is set: another migrate is running, or one was killed mid-run; if none is running, run `npm run migrate -- --unlock` (a built release: `node dist/src/cli/migrate.js --unlock`) and try again";

/** Whether knex refused to migrate because its lock is set ({@link MIGRATION_LOCKED_HINT}). */
export function isMigrationLocked(error: unknown): boolean {
  return typeof error === "object" && error !== null && (error as { name?: unknown }).name === "MigrationLocked";
}

/**
 * Clears knex's migration lock, which a migrate process killed mid-run (SIGKILL, OOM, a lost
 * machine) leaves set when its batch held a migration that runs outside a transaction; every later
 * migrate then fails with `MigrationLocked`. Only for when no migrate is running.
 */
export async function freeMigrationLock(db: Knex): Promise<void> {
  await db.migrate.forceFreeMigrationsLock(migrationConfig());
}
