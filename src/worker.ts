import { loadConfig } from "./config";
import { createLogger } from "./logger";
import { createDeps, closeDeps } from "./runtime";
import { startWorker } from "./worker/run-worker";
import { installTemporalRuntimeLogger, onShutdownSignal, requireEnv } from "./infra/process";
import { startSimulator } from "./infra/simulator";
import { ensureReconcilerSchedule, keepReconcilerSchedule } from "./worker/reconciler-schedule";
import { startMetricsServer } from "./metrics/exposition";
import { setBacklogSource } from "./metrics/registry";
import { assertEncryptionKeyMatches } from "./crypto/key-check";
import { untilDatabaseAnswers } from "./db/availability";

/**
 * Production worker process (`node dist/src/worker.js`): polls our Temporal task queue and runs
 * workflows and activities. Scale it horizontally; every instance polls the same queue.
 */
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.LOG_LEVEL, "automata-worker");
  installTemporalRuntimeLogger(logger, { metricsAddress: config.AUTOMATA_TEMPORAL_METRICS_ADDRESS });
  const databaseUrl = requireEnv("DATABASE_URL", "activities read and write PostgreSQL");
  const temporalAddress = requireEnv("TEMPORAL_ADDRESS", "the worker polls Temporal for tasks");
  const encryptionKey = requireEnv("AUTOMATA_ENCRYPTION_KEY", "activities decrypt device tokens and provider credentials");
  // Off by default in production: an app without credentials fails with provider_not_configured.
  const simulator = config.AUTOMATA_SIMULATOR === "on" ? await startSimulator(logger, { apnsPort: config.AUTOMATA_SIMULATOR_APNS_PORT, fcmPort: config.AUTOMATA_SIMULATOR_FCM_PORT }) : undefined;
  const deps = await createDeps({ config, logger, databaseUrl, temporalAddress, encryptionKey, simulator: simulator?.target, campaignPool: true });
  // A worker started while PostgreSQL is down waits for it; a wrong key still ends the process.
  await untilDatabaseAnswers(() => assertEncryptionKeyMatches(deps.db, deps.secrets, logger), {
    onUnavailable: (error, retryInMs) => logger.warn({ err: error, retry_in_ms: retryInMs }, "PostgreSQL is unavailable; the worker waits for it before polling"),
  });
  // Everything that can fail at start comes before polling: a failure then exits a worker that runs
  // nothing yet, instead of killing local-activity sends and campaign chunks already in flight.
  const reconcilerSchedule = { intervalMs: config.AUTOMATA_RECONCILE_INTERVAL, olderThanMs: config.AUTOMATA_RECONCILE_AFTER };
  await ensureReconcilerSchedule(deps, reconcilerSchedule);
  const stopKeepingSchedule = keepReconcilerSchedule(deps, reconcilerSchedule);
  // The worker has no API: a tiny server exposes /metrics (ours + the Temporal SDK's) and /healthz.
  setBacklogSource(deps.db);
  // HOST as for the API: fly sets "::" so its private IPv6 network (the scraper, the check) reaches it.
  const metrics = await startMetricsServer(logger, config.AUTOMATA_METRICS_PORT, config.HOST);
  logger.info({ port: metrics.port }, "metrics listening");
  const worker = await startWorker(deps, temporalAddress);
  // SIGTERM: stop polling, let in-flight activities finish within AUTOMATA_SHUTDOWN_GRACE. Installed
  // as soon as tasks can run, so a signal never meets Node's default (an immediate exit mid-send).
  onShutdownSignal(logger, async () => {
    stopKeepingSchedule();
    await worker.shutdown();
    await metrics.close();
    await closeDeps(deps);
    await simulator?.stop();
  });
  logger.info({ taskQueue: config.TEMPORAL_TASK_QUEUE }, "worker running");
  await worker.done;
  stopKeepingSchedule();
  await metrics.close();
  await closeDeps(deps);
}

main().catch((error: unknown) => {
  console.error("worker failed:", error);
  process.exit(1);
});
