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

/** A whole platform started for a benchmark: throwaway PostgreSQL and Temporal, API, worker, simulator. */
export interface BenchPlatform {
  config: Config;
  deps: Deps;
  api: ApiServer;
  worker: RunningWorker;
  /** The provider simulator's endpoints and credentials (it runs in a child process). */
  simulator: SimulatorTarget;
  adminToken: string;
  stop(): Promise<void>;
}

/** Starts everything a benchmark needs on free ports under a temporary data directory. */
export async function startBenchPlatform(env: Record<string, string> = {}): Promise<BenchPlatform> {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "automata-bench-"));
  fs.chmodSync(home, 0o755);
  const adminToken = crypto.randomBytes(24).toString("base64url");
  const config = loadConfig({
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
  const stack: LocalStack = await startLocalStack(config, logger, { headless: true, ephemeral: true });
  const migrator = createDb(stack.databaseUrl, 2);
  await migrateLatest(migrator);
  await migrator.destroy();
  const simulator = await startSimulatorProcess();
  const deps = await createDeps({
    config,
    logger,
    databaseUrl: stack.databaseUrl,
    temporalAddress: stack.temporalAddress,
    encryptionKey: crypto.randomBytes(32).toString("base64"),
    poolMax: 40,
    simulator: simulator.target,
  });
  const worker = await startWorker(deps, stack.temporalAddress);
  const api = await startApiServer(deps, 0, "127.0.0.1");
  return {
    config,
    deps,
    api,
    worker,
    simulator: simulator.target,
    adminToken,
    stop: async () => {
      await api.close();
      await worker.shutdown();
      await closeDeps(deps);
      await simulator.stop();
      await stack.stop();
      fs.rmSync(home, { recursive: true, force: true });
    },
  };
}

/**
 * Starts bench/simulator-process.ts and reads the target it prints. Closing its stdin (stop, or
 * this process dying) ends it.
 */
async function startSimulatorProcess(): Promise<{ target: SimulatorTarget; stop(): Promise<void> }> {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(__dirname, "simulator-process.ts")], { stdio: ["pipe", "pipe", "inherit"] });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const lines = readline.createInterface({ input: child.stdout! });
  const first = await new Promise<string>((resolve, reject) => {
    lines.once("line", resolve);
    child.once("exit", (code) => reject(new Error(`simulator process exited with ${code}`)));
  });
  lines.close();
  return {
    target: JSON.parse(first) as SimulatorTarget,
    stop: async () => {
      child.stdin!.end();
      await exited;
    },
  };
}

/** The p-th percentile (0–100) of a list of numbers. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Reads `--name value` flags with numeric defaults. */
export function numericFlag(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  const value = index >= 0 ? Number(process.argv[index + 1]) : fallback;
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} must be a positive number`);
  return value;
}
