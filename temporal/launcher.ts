import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { Connection } from "@temporalio/client";
import type { Logger } from "pino";
import { CUSTOM_SEARCH_ATTRIBUTES, CUSTOM_SEARCH_ATTRIBUTE_KEYS } from "./search-attributes";
import { commandLineIncludes, isAlive, processInfo, signalAndWait } from "../src/infra/process-info";

/** The Temporal CLI release we build: later tags carry a go.mod `replace` that `go install` rejects. */
export const TEMPORAL_CLI_VERSION = "v1.5.1";
/** Where a built CLI is cached between runs, outside any checkout. */
export const TEMPORAL_CLI_CACHE_DIR = path.join(os.homedir(), ".cache", "automata-signal", "bin");

/** A Temporal server this process can talk to, started here or configured externally. */
export interface TemporalServerHandle {
  /** gRPC address (host:port). */
  address: string;
  namespace: string;
  /** Web UI URL when this process started the dev server. */
  uiUrl?: string;
  /** True when this process started the server and must stop it. */
  owned: boolean;
  /**
   * Settles with why the server we started exited without stop() being called (never settles for a
   * server we did not start): nothing would run or be sent until someone noticed.
   */
  unexpectedExit?: Promise<string>;
  stop(): Promise<void>;
}

/** Options for starting the Temporal dev server. */
export interface DevServerOptions {
  port: number;
  uiPort: number;
  namespace: string;
  /** SQLite file that persists workflows between starts. */
  dbFile: string;
  logger: Logger;
  /** Run without the web UI (tests). */
  headless?: boolean;
  /** Extra --dynamic-config-value KEY=JSON pairs. */
  dynamicConfig?: Record<string, unknown>;
  /** Explicit CLI path; otherwise resolved by {@link resolveTemporalCli}. */
  cliPath?: string;
  /**
   * Runs the server in a session of its own, out of reach of the terminal's Ctrl-C: the caller's
   * signal handler stops it once the worker has drained (the worker reports its last activities
   * to it). A caller that passes this must handle SIGINT and SIGTERM.
   */
  detached?: boolean;
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    // Missing or not executable: the caller tries the next source.
    return false;
  }
}

function findOnPath(binary: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    const candidate = path.join(dir, binary);
    if (dir && isExecutable(candidate)) return candidate;
  }
  return undefined;
}

/**
 * Finds the Temporal CLI: $TEMPORAL_CLI, then `temporal` on PATH, then our cache, then builds it
 * with `go install` into the cache. Returns undefined when none of these can work (no Go).
 */
export async function resolveTemporalCli(logger: Logger, env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  if (env.TEMPORAL_CLI) {
    if (!isExecutable(env.TEMPORAL_CLI)) throw new Error(`TEMPORAL_CLI=${env.TEMPORAL_CLI} is not an executable file`);
    return env.TEMPORAL_CLI;
  }
  const onPath = findOnPath("temporal");
  if (onPath) return onPath;
  const cached = path.join(TEMPORAL_CLI_CACHE_DIR, "temporal");
  if (isExecutable(cached)) return cached;
  const go = findOnPath("go");
  if (!go) return undefined;
  return buildTemporalCli(go, logger);
}

/**
 * The environment `go install` runs in: its output directory, and, when HOME is unset (a service
 * account, a bare CI runner), build and module caches under ours, without which go refuses to build.
 */
export function goInstallEnv(env: NodeJS.ProcessEnv, gobin: string, cacheRoot: string): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...env, GOBIN: gobin, GOFLAGS: "-mod=mod" };
  if (!env.HOME) {
    if (!env.GOCACHE && !env.XDG_CACHE_HOME) out.GOCACHE = path.join(cacheRoot, "go-build");
    if (!env.GOPATH && !env.GOMODCACHE) out.GOPATH = path.join(cacheRoot, "go");
  }
  return out;
}

const STAGING_PREFIX = ".build-";

/** Removes staging directories of builds whose process is gone (each holds a partial binary of ~250 MB). */
function removeAbandonedBuilds(into: string): void {
  for (const entry of fs.readdirSync(into)) {
    if (!entry.startsWith(STAGING_PREFIX)) continue;
    const pid = Number(entry.slice(STAGING_PREFIX.length).split("-")[0]);
    if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) continue;
    fs.rmSync(path.join(into, entry), { recursive: true, force: true });
  }
}

/**
 * Builds the CLI with `go install` into a staging directory and moves it into `into` when the
 * build succeeded: go copies the binary into GOBIN, and a build killed mid-copy would leave a
 * truncated `temporal` every later start takes for the real one. Prints progress so a first start
 * does not look hung.
 */
export async function buildTemporalCli(go: string, logger: Logger, into = TEMPORAL_CLI_CACHE_DIR, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  fs.mkdirSync(into, { recursive: true });
  removeAbandonedBuilds(into);
  const staging = fs.mkdtempSync(path.join(into, `${STAGING_PREFIX}${process.pid}-`));
  const pkg = `github.com/temporalio/cli/cmd/temporal@${TEMPORAL_CLI_VERSION}`;
  logger.info({ pkg, into }, "building the Temporal CLI with go install (first run only, a few minutes)");
  const started = Date.now();
  const ticker = setInterval(() => {
    logger.info({ elapsedSeconds: Math.round((Date.now() - started) / 1000) }, "still building the Temporal CLI…");
  }, 20_000);
  try {
    await new Promise<void>((resolve, reject) => {
      const child = spawn(go, ["install", pkg], {
        env: goInstallEnv(env, staging, path.dirname(into)),
        stdio: ["ignore", "inherit", "pipe"],
      });
      let tail = "";
      child.stderr.on("data", (chunk: Buffer) => {
        const text = chunk.toString();
        tail = (tail + text).slice(-4000);
        for (const line of text.split("\n")) if (line.trim()) logger.debug({ component: "go" }, line.trim());
      });
      child.on("error", reject);
      child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`go install ${pkg} failed (exit ${code}): ${tail}`))));
    });
    const built = path.join(into, "temporal");
    fs.renameSync(path.join(staging, "temporal"), built);
    logger.info({ seconds: Math.round((Date.now() - started) / 1000) }, "Temporal CLI built");
    return built;
  } finally {
    clearInterval(ticker);
    fs.rmSync(staging, { recursive: true, force: true });
  }
}

/** Connects to a Temporal frontend, retrying until it answers or the deadline passes. */
export async function waitForTemporal(address: string, timeoutMs: number, exited?: () => string | undefined): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    const exitReason = exited?.();
    if (exitReason) throw new Error(`Temporal dev server exited before it was ready: ${exitReason}`);
    try {
      const connection = await Connection.connect({ address, connectTimeout: 1_000 });
      try {
        await connection.workflowService.getSystemInfo({});
        return;
      } finally {
        await connection.close();
      }
    } catch (error) {
      lastError = error;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  throw new Error(`Temporal at ${address} did not answer within ${timeoutMs} ms: ${String(lastError)}`);
}

/** Registers our custom search attributes on a namespace; existing ones are left as they are. */
export async function ensureSearchAttributes(address: string, namespace: string): Promise<void> {
  const connection = await Connection.connect({ address });
  try {
    const existing = await connection.operatorService.listSearchAttributes({ namespace });
    const missing = Object.keys(CUSTOM_SEARCH_ATTRIBUTES).filter((name) => !(name in (existing.customAttributes ?? {})));
    if (missing.length === 0) return;
    // IndexedValueType.KEYWORD = 2 in the Temporal API enum.
    const searchAttributes = Object.fromEntries(missing.map((name) => [name, 2]));
    await connection.operatorService.addSearchAttributes({ namespace, searchAttributes });
  } finally {
    await connection.close();
  }
}

/**
 * Starts `temporal server start-dev` persisting to SQLite (WAL) with our search attributes, or falls
 * back to the SDK's downloaded dev server when no CLI can be found or built.
 */
export async function startTemporalDevServer(options: DevServerOptions): Promise<TemporalServerHandle> {
  const address = `127.0.0.1:${options.port}`;
  const uiUrl = options.headless ? undefined : `http://localhost:${options.uiPort}`;
  await stopOrphanedDevServer(options.dbFile, options.logger);
  if (await answers(address)) {
    options.logger.warn({ address }, "a Temporal server already answers on this port; reusing it");
    await ensureSearchAttributes(address, options.namespace);
    return { address, namespace: options.namespace, uiUrl, owned: false, stop: async () => undefined };
  }
  fs.mkdirSync(path.dirname(options.dbFile), { recursive: true });
  const cli = options.cliPath ?? (await resolveTemporalCli(options.logger));
  if (!cli) return startWithSdkDownload(options);

  const args = [
    "server", "start-dev",
    "--ip", "127.0.0.1",
    "--port", String(options.port),
    "--namespace", options.namespace,
    "--db-filename", options.dbFile,
    // WAL with synchronous=NORMAL survives process crashes (only an OS crash can lose the last
    // commits) and cuts fsyncs per workflow transition, the dev server's bottleneck.
    "--sqlite-pragma", "journal_mode=WAL",
    "--sqlite-pragma", "synchronous=NORMAL",
    "--log-level", "warn",
    ...(options.headless ? ["--headless"] : ["--ui-port", String(options.uiPort)]),
    ...Object.entries(CUSTOM_SEARCH_ATTRIBUTES).flatMap(([name, type]) => ["--search-attribute", `${name}=${type}`]),
    ...Object.entries(options.dynamicConfig ?? {}).flatMap(([key, value]) => ["--dynamic-config-value", `${key}=${JSON.stringify(value)}`]),
  ];
  const child: ChildProcess = spawn(cli, args, { stdio: ["ignore", "pipe", "pipe"], detached: options.detached === true });
  // Exiting this process stops it (a crash must not leave a detached server running; an orphan is
  // otherwise only found by the next start).
  const stopWithUs = () => child.kill("SIGTERM");
  process.once("exit", stopWithUs);
  child.once("exit", () => process.off("exit", stopWithUs));
  const pidFile = pidFileOf(options.dbFile);
  if (child.pid !== undefined) fs.writeFileSync(pidFile, String(child.pid));
  let exitReason: string | undefined;
  let stderrTail = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderrTail = (stderrTail + chunk.toString()).slice(-2000);
  });
  child.stdout?.on("data", (chunk: Buffer) => options.logger.trace({ component: "temporal" }, chunk.toString().trim()));
  let stopping = false;
  const unexpectedExit = new Promise<string>((resolve) => {
    child.on("exit", (code, signal) => {
      exitReason = `exit ${code ?? signal}: ${stderrTail.trim()}`;
      if (!stopping) resolve(`the Temporal dev server exited (${exitReason})`);
    });
  });
  try {
    await waitForTemporal(address, 60_000, () => exitReason);
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  }
  return {
    address,
    namespace: options.namespace,
    uiUrl,
    owned: true,
    unexpectedExit,
    stop: async () => {
      stopping = true;
      await stopChild(child);
      fs.rmSync(pidFile, { force: true });
    },
  };
}

/** Where a dev server we started keeps its pid: beside its database, to be found after we die. */
function pidFileOf(dbFile: string): string {
  return `${dbFile}.pid`;
}

/**
 * Stops the dev server an earlier start left running when its process was killed (SIGKILL gives
 * no chance to stop children): it would otherwise answer on the port, be reused without being
 * ours to stop, and outlive every later start. One whose parent still runs (a start sharing this
 * directory) is left alone; a pid file naming some other process now is stale and removed.
 */
async function stopOrphanedDevServer(dbFile: string, logger: Logger): Promise<void> {
  const pidFile = pidFileOf(dbFile);
  if (!fs.existsSync(pidFile)) return;
  const pid = Number(fs.readFileSync(pidFile, "utf8").trim());
  const server = Number.isInteger(pid) && pid > 0 && isAlive(pid) ? processInfo(pid) : undefined;
  if (server === undefined || server.name !== "temporal" || !commandLineIncludes(pid, dbFile)) {
    fs.rmSync(pidFile, { force: true });
    return;
  }
  if (processInfo(server.parentPid)?.name === "node") return;
  logger.warn({ pid }, "stopping the Temporal dev server left running by an earlier start");
  if (!(await signalAndWait(pid, "SIGTERM", 10_000))) await signalAndWait(pid, "SIGKILL", 5_000);
  fs.rmSync(pidFile, { force: true });
}

async function answers(address: string): Promise<boolean> {
  try {
    await waitForTemporal(address, 500);
    return true;
  } catch {
    // Nothing listening: we start our own.
    return false;
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

async function startWithSdkDownload(options: DevServerOptions): Promise<TemporalServerHandle> {
  options.logger.warn("no Temporal CLI and no Go toolchain; trying the SDK's own dev server download (needs internet)");
  const { TestWorkflowEnvironment } = await import("@temporalio/testing");
  const env = await TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: "cached-download" },
      ip: "127.0.0.1",
      port: options.port,
      namespace: options.namespace,
      dbFilename: options.dbFile,
      ui: !options.headless,
      uiPort: options.headless ? undefined : options.uiPort,
      extraArgs: ["--sqlite-pragma", "journal_mode=WAL", "--sqlite-pragma", "synchronous=NORMAL"],
      searchAttributes: CUSTOM_SEARCH_ATTRIBUTE_KEYS,
    },
  });
  return {
    address: `127.0.0.1:${options.port}`,
    namespace: options.namespace,
    uiUrl: options.headless ? undefined : `http://localhost:${options.uiPort}`,
    owned: true,
    stop: () => env.teardown(),
  };
}

/** The CLI's `--version` line; temporal/install-cli.ts prints it to show the binary runs. */
export function temporalCliVersion(cli: string): string {
  return spawnSync(cli, ["--version"], { encoding: "utf8" }).stdout.trim();
}
