import path from "node:path";
import { spawn, type ChildProcess } from "node:child_process";
import type { TestApp } from "./harness";

const ROOT = path.resolve(__dirname, "..", "..");

/**
 * Starts test/support/worker-process.ts as a process of its own on `app`'s task queue, database,
 * key and simulator, and resolves once it polls; it rejects if the process exits first. Tests kill
 * it (SIGKILL: a crash) or stop it (SIGTERM: a deploy). `env` adds or overrides settings; `track`
 * gets the process at once, so a test's `after` can kill one that never became ready.
 */
export function spawnWorkerProcess(app: TestApp, options: { env?: Record<string, string>; track?: Set<ChildProcess> } = {}): Promise<ChildProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "test/support/worker-process.ts")], {
    cwd: ROOT,
    env: {
      ...process.env,
      TEMPORAL_TASK_QUEUE: app.config.TEMPORAL_TASK_QUEUE,
      AUTOMATA_ENCRYPTION_KEY: app.encryptionKey,
      AUTOMATA_TEST_SIMULATOR: JSON.stringify(app.simulator!.target),
      LOG_LEVEL: "error",
      ...options.env,
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  options.track?.add(child);
  return new Promise((resolve, reject) => {
    child.once("exit", (code, signal) => reject(new Error(`worker exited early with ${code ?? signal}`)));
    child.stdout!.on("data", (chunk: Buffer) => {
      if (chunk.toString().includes("worker ready")) resolve(child);
    });
  });
}
