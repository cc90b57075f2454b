import { loadConfig } from "./config";
import { createLogger } from "./logger";
import { createDeps, closeDeps } from "./runtime";
import { startWorker } from "./worker/run-worker";
import { installTemporalRuntimeLogger, onShutdownSignal, requireEnv } from "./infra/process";

/**
 * Production worker process (`node dist/src/worker.js`): polls our Temporal task queue and runs
 * workflows and activities. Scale it horizontally; every instance polls the same queue.
 */
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.LOG_LEVEL, "automata-worker");
  installTemporalRuntimeLogger(logger);
  const databaseUrl = requireEnv("DATABASE_URL", "activities read and write PostgreSQL");
  const temporalAddress = requireEnv("TEMPORAL_ADDRESS", "the worker polls Temporal for tasks");
  const encryptionKey = requireEnv("AUTOMATA_ENCRYPTION_KEY", "activities decrypt device tokens and provider credentials");
  const deps = await createDeps({ config, logger, databaseUrl, temporalAddress, encryptionKey });
  const worker = await startWorker(deps, temporalAddress);
  logger.info({ taskQueue: config.TEMPORAL_TASK_QUEUE }, "worker running");
  // SIGTERM: stop polling, let in-flight activities finish within AUTOMATA_SHUTDOWN_GRACE.
  onShutdownSignal(logger, async () => {
    await worker.shutdown();
    await closeDeps(deps);
  });
  await worker.done;
  await closeDeps(deps);
}

main().catch((error: unknown) => {
  console.error("worker failed:", error);
  process.exit(1);
});
