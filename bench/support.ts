import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import crypto from "node:crypto";
import { loadConfig, type Config } from "../src/config";
import { createLogger } from "../src/logger";
import { startLocalStack, type LocalStack } from "../src/infra/local-stack";
import { createDb, migrateLatest } from "../src/db/knex";
import { createDeps, closeDeps, startApiServer, type ApiServer } from "../src/runtime";
import { startWorker, type RunningWorker } from "../src/worker/run-worker";
import { installTemporalRuntimeLogger } from "../src/infra/process";
import { spawn } from "node:child_process";
import readline from "node:readline";
import type { SimulatorTarget } from "../src/messages/delivery";
import type { Deps } from "../src/deps";
import { freePort } from "../src/infra/ports";
import { FCM_DEFAULT_SOCKETS } from "../src/providers/fcm";

/** A whole platform started for a benchmark: throwaway PostgreSQL and Temporal, API, worker, simulator. */
export interface BenchPlatform {
  config: Config;
  deps: Deps;
  api: ApiServer;
  worker: RunningWorker;
  /** The provider simulator's endpoints and credentials (it runs in a child process). */
  simulator: SimulatorTarget;
  /** Process id of the simulator's process. */
  simulatorPid: number;
  adminToken: string;
  stop(): Promise<void>;
}

/** Starts everything a benchmark needs on free ports under a temporary data directory. */
export async function startBenchPlatform(env: Record<string, string> = {}, providerLatencyMs = 0): Promise<BenchPlatform> {
  // The platform's own servers are the ones measured (their CPU is read by process), and the
  // benchmark's rows are never cleaned up: it must not run against someone's database or Temporal.
  for (const name of ["DATABASE_URL", "TEMPORAL_ADDRESS"]) {
    if (process.env[name]) throw new Error(`${name} is set: the benchmarks start their own PostgreSQL and Temporal; unset it`);
  }
  const tuning = Object.keys(process.env).filter((name) => name.startsWith("AUTOMATA_") && !/KEY|TOKEN|SECRET|PASSWORD/.test(name));
  if (tuning.length > 0) console.log(`settings from the environment: ${tuning.map((name) => `${name}=${process.env[name]}`).join(" ")}`);
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "automata-bench-"));
  fs.chmodSync(home, 0o755);
  const adminToken = crypto.randomBytes(24).toString("base64url");
  const config = loadConfig({
    // Across a real round trip, size the FCM pool as for Google (the simulator's default is for loopback).
    ...(providerLatencyMs > 0 ? { AUTOMATA_FCM_CONNECTIONS: String(FCM_DEFAULT_SOCKETS) } : {}),
    ...process.env,
    AUTOMATA_HOME: home,
    AUTOMATA_PG_PORT: String(await freePort()),
    TEMPORAL_PORT: String(await freePort()),
    TEMPORAL_UI_PORT: String(await freePort()),
    AUTOMATA_ADMIN_TOKEN: adminToken,
    LOG_LEVEL: process.env.LOG_LEVEL ?? "error",
    ...env,
  });
  const logger = createLogger(config.LOG_LEVEL, "bench");
  installTemporalRuntimeLogger(logger);
  // Stopped in reverse order, each whatever the others do: a failed start or stop must not leave
  // the Temporal dev server running with its temporary folder.
  const stops: Array<() => Promise<unknown>> = [async () => fs.rmSync(home, { recursive: true, force: true })];
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      for (const step of stops.reverse()) {
        await step().catch((error: unknown) => console.error("while stopping the benchmark platform:", error));
      }
    })());
  const stopOnSignal = (signal: NodeJS.Signals) => {
    console.error(`${signal}: stopping the benchmark platform`);
    void stop().finally(() => process.exit(130));
  };
  process.once("SIGINT", stopOnSignal);
  process.once("SIGTERM", stopOnSignal);
  // A closed terminal: the servers run detached and would outlive the benchmark otherwise.
  process.once("SIGHUP", stopOnSignal);
  try {
    const stack: LocalStack = await startLocalStack(config, logger, { headless: true, ephemeral: true });
    stops.push(() => stack.stop());
    const migrator = createDb(stack.databaseUrl, 2);
    try {
      await migrateLatest(migrator);
    } finally {
      await migrator.destroy();
    }
    const simulator = await startSimulatorProcess(providerLatencyMs);
    stops.push(() => simulator.stop());
    const deps = await createDeps({
      config,
      logger,
      databaseUrl: stack.databaseUrl,
      temporalAddress: stack.temporalAddress,
      encryptionKey: crypto.randomBytes(32).toString("base64"),
      poolMax: 40,
      simulator: simulator.target,
      campaignPool: true,
    });
    stops.push(() => closeDeps(deps));
    const worker = await startWorker(deps, stack.temporalAddress);
    stops.push(() => worker.shutdown());
    const api = await startApiServer(deps, 0, "127.0.0.1");
    stops.push(() => api.close());
    return { config, deps, api, worker, simulator: simulator.target, simulatorPid: simulator.pid, adminToken, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/**
 * Starts bench/simulator-process.ts and reads the target it prints. Closing its stdin (stop, or
 * this process dying) ends it.
 */
export async function startSimulatorProcess(latencyMs = 0): Promise<{ target: SimulatorTarget; pid: number; stop(): Promise<void> }> {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(__dirname, "simulator-process.ts"), "--provider-latency-ms", String(latencyMs)], { stdio: ["pipe", "pipe", "inherit"] });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const lines = readline.createInterface({ input: child.stdout! });
  const first = await new Promise<string>((resolve, reject) => {
    lines.once("line", resolve);
    child.once("exit", (code) => reject(new Error(`simulator process exited with ${code}`)));
  });
  lines.close();
  return {
    target: JSON.parse(first) as SimulatorTarget,
    pid: child.pid!,
    stop: async () => {
      child.stdin!.end();
      await exited;
    },
  };
}

/** CPU seconds used so far, by role: this process (API + worker), the simulator, PostgreSQL, Temporal. */
export type CpuByRole = Record<"api+worker" | "simulator" | "postgres" | "temporal", number>;

/**
 * Reads user+system time from /proc (Linux; elsewhere all zeros) for this process and the servers
 * it started: each child of this process by role, with its live descendants and the time of the
 * ones it has reaped (a PostgreSQL backend or autovacuum worker that exits mid-run moves into its
 * postmaster's cutime/cstime instead of dropping out). Another PostgreSQL or Temporal on the host,
 * such as a test run's, is not counted.
 */
export function cpuByRole(simulatorPid: number): CpuByRole {
  const totals: CpuByRole = { "api+worker": 0, simulator: 0, postgres: 0, temporal: 0 };
  let entries: string[];
  try {
    entries = fs.readdirSync("/proc").filter((name) => /^\d+$/.test(name));
  } catch {
    return totals;
  }
  const ticksPerSecond = 100;
  const processes = new Map<number, { comm: string; ppid: number; own: number; reaped: number }>();
  for (const pid of entries) {
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    } catch {
      continue; // exited meanwhile
    }
    const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    // Fields after the command: state, ppid, …, utime (11), stime (12), cutime (13), cstime (14).
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    processes.set(Number(pid), {
      comm,
      ppid: Number(fields[1]),
      own: (Number(fields[11]) + Number(fields[12])) / ticksPerSecond,
      reaped: (Number(fields[13]) + Number(fields[14])) / ticksPerSecond,
    });
  }
  const children = new Map<number, number[]>();
  for (const [pid, { ppid }] of processes) children.set(ppid, [...(children.get(ppid) ?? []), pid]);
  const subtree = (pid: number): number => {
    const entry = processes.get(pid);
    return (entry ? entry.own + entry.reaped : 0) + (children.get(pid) ?? []).reduce((sum, child) => sum + subtree(child), 0);
  };
  totals["api+worker"] = processes.get(process.pid)?.own ?? 0;
  for (const child of children.get(process.pid) ?? []) {
    const comm = processes.get(child)!.comm;
    if (child === simulatorPid) totals.simulator += subtree(child);
    else if (comm === "postgres") totals.postgres += subtree(child);
    else if (comm === "temporal") totals.temporal += subtree(child);
  }
  return totals;
}

/** The p-th percentile (0–100) of a list of numbers. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

