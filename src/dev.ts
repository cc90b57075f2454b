import os from "node:os";
import { loadConfig } from "./config";
import { createLogger } from "./logger";
import { startLocalStack, type LocalStack } from "./infra/local-stack";
import { readOrCreateLocalSecret } from "./infra/local-secrets";
import { isMigrationLocked, MIGRATION_LOCKED_HINT, migrateLatest, migrationStatus } from "./db/knex";
import { createDeps, closeDeps, startApiServer } from "./runtime";
import { startWorker } from "./worker/run-worker";
import { installTemporalRuntimeLogger, runStopSteps } from "./infra/process";
import { startSimulator } from "./infra/simulator";
import { ensureReconcilerSchedule, keepReconcilerSchedule } from "./worker/reconciler-schedule";
import { assertEncryptionKeyMatches } from "./crypto/key-check";
import { assertPortsFree, PortInUseError } from "./infra/ports";

/**
 * `npm start`: the whole platform in one process tree on embedded defaults — PostgreSQL, the
 * Temporal dev server with its UI, migrations, the API and a worker. Ctrl-C stops all of it.
 */
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.LOG_LEVEL);
  // Before the SDK runtime, which binds the metrics address itself.
  await assertPortsFree([
    { host: config.HOST, port: config.PORT, setting: "PORT", what: "the API" },
    ...(config.AUTOMATA_TEMPORAL_METRICS_ADDRESS ? [{ ...hostAndPort(config.AUTOMATA_TEMPORAL_METRICS_ADDRESS), setting: "AUTOMATA_TEMPORAL_METRICS_ADDRESS (empty: no exporter)", what: "the Temporal SDK's metrics" }] : []),
  ]);
  // The SDK is chatty at info (bundling, state changes); operators of `npm start` need its warnings only.
  // Its metrics exporter (AUTOMATA_TEMPORAL_METRICS_ADDRESS) is appended to the API's /metrics: one process, one scrape.
  installTemporalRuntimeLogger(logger.child({}, { level: logger.levelVal < 30 ? logger.level : "warn" }), { metricsAddress: config.AUTOMATA_TEMPORAL_METRICS_ADDRESS });
  config.AUTOMATA_ADMIN_TOKEN ??= readOrCreateLocalSecret(config.homeDir, "admin-token");
  // Every process here is this release, so values can be sealed to their application at once.
  config.AUTOMATA_SEAL_BOUND ??= "on";
  const encryptionKey = config.AUTOMATA_ENCRYPTION_KEY ?? readOrCreateLocalSecret(config.homeDir, "encryption.key", () => require("node:crypto").randomBytes(32).toString("base64"));

  // Until everything is up, Ctrl-C stops what has started and exits: PostgreSQL and Temporal are
  // our children, and nothing else would stop them (the Temporal SDK's own handlers are off).
  // Registered before anything is said or started, so no signal finds Node's default (die at once).
  let stackStarting: Promise<LocalStack> | undefined;
  const abortStart = (signal: NodeJS.Signals) => {
    startAborted = true;
    console.log(`\n${signal} while starting: stopping Temporal and PostgreSQL…`);
    // A stack whose start failed has already stopped what it started.
    void (stackStarting ?? Promise.resolve(undefined))
      .then(
        (started) => started?.stop().catch((error: unknown) => logger.error({ err: error }, "could not stop cleanly")),
        () => undefined,
      )
      .finally(() => process.exit(128 + os.constants.signals[signal]));
  };
  process.once("SIGINT", abortStart);
  process.once("SIGTERM", abortStart);
  process.once("SIGHUP", abortStart);
  console.log(`Automata-Signal: starting (data in ${config.homeDir})…`);
  stackStarting = startLocalStack(config, logger);
  const stack = await stackStarting;
  // Embedded PostgreSQL and Temporal are child processes: a start that fails after them (a wrong
  // encryption key, a port in use, a failing migration) must stop them, not leave them running.
  const { simulator, deps, worker, apiDeps, api } = await (async () => {
    // Apps without APNs/FCM credentials send to the built-in simulator (AUTOMATA_SIMULATOR=off disables it).
    const simulator = config.AUTOMATA_SIMULATOR === "off" ? undefined : await startSimulator(logger, { apnsPort: config.AUTOMATA_SIMULATOR_APNS_PORT, fcmPort: config.AUTOMATA_SIMULATOR_FCM_PORT });
    const deps = await createDeps({ config, logger, databaseUrl: stack.databaseUrl, temporalAddress: stack.temporalAddress, encryptionKey, simulator: simulator?.target, campaignPool: true });
    const { unknown } = await migrationStatus(deps.db);
    if (unknown.length > 0) logger.warn({ migrations: unknown }, "migrations applied by a newer release, not known to this one (left as they are)");
    const applied = await migrateLatest(deps.db);
    if (applied.length > 0) logger.info({ migrations: applied }, "database migrated");
    await assertEncryptionKeyMatches(deps.db, deps.secrets, logger);
    // Before polling, as the production worker does: a failure here stops a worker that runs nothing yet.
    const reconcilerSchedule = { intervalMs: config.AUTOMATA_RECONCILE_INTERVAL, olderThanMs: config.AUTOMATA_RECONCILE_AFTER };
    await ensureReconcilerSchedule(deps, reconcilerSchedule);
    // Unref'd: it never holds the process; the process exits through stop().
    keepReconcilerSchedule(deps, reconcilerSchedule);
    const worker = await startWorker(deps, stack.temporalAddress);
    // A pool of the API's own, as in production where they are separate processes: sends hold a
    // connection while the provider answers, and a slow provider must not starve API requests.
    const apiDeps = await createDeps({ config, logger, databaseUrl: stack.databaseUrl, temporalAddress: stack.temporalAddress, encryptionKey, statementTimeoutMs: config.AUTOMATA_API_STATEMENT_TIMEOUT });
    const api = await startApiServer(apiDeps, config.PORT, config.HOST);
    return { simulator, deps, worker, apiDeps, api };
  })().catch(async (error: unknown) => {
    await stack.stop();
    throw error;
  });

  let stopping = false;
  const stop = async (reason: string, failed = false) => {
    if (stopping) return;
    stopping = true;
    console.log(`\n${reason}: stopping API, worker, Temporal and PostgreSQL…`);
    const allStopped = await runStopSteps(
      [
        { name: "API", stop: () => api.close() },
        { name: "API database pool", stop: () => closeDeps(apiDeps) },
        // After a worker failure this rethrows it (already logged); the rest must still stop.
        { name: "worker", stop: () => worker.shutdown() },
        { name: "worker database pool", stop: () => closeDeps(deps) },
        { name: "provider simulator", stop: () => simulator?.stop() },
        { name: "Temporal and PostgreSQL", stop: () => stack.stop() },
      ],
      (name, error) => logger.error({ err: error, part: name }, "could not stop cleanly"),
    );
    console.log("stopped");
    process.exit(failed || !allStopped ? 1 : 0);
  };
  // The running platform's handlers replace the start's (added first: no moment without one).
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
  // Closing the terminal: Node's default for SIGHUP is to die at once, leaving the servers running.
  process.on("SIGHUP", () => void stop("SIGHUP"));
  process.off("SIGINT", abortStart);
  process.off("SIGTERM", abortStart);
  process.off("SIGHUP", abortStart);
  console.log(
    [
      "",
      "Automata-Signal is running",
      `  API            ${api.url}/api/v1   (docs: ${api.url}/docs, metrics: ${api.url}/metrics)`,
      `  Temporal UI    ${stack.temporalUiUrl ?? "(external Temporal at " + stack.temporalAddress + ")"}`,
      `  Temporal gRPC  ${stack.temporalAddress}`,
      `  PostgreSQL     ${stack.postgres ? `embedded on port ${new URL(stack.databaseUrl).port}` : "DATABASE_URL"}`,
      `  Simulator      ${simulator ? `APNs ${simulator.target.apnsEndpoint.url}, FCM ${simulator.target.fcmEndpoint.url} (for apps without credentials)` : "off"}`,
      `  Admin token    ${config.AUTOMATA_ADMIN_TOKEN}`,
      "",
      "Create an application:",
      `  curl -s -X POST ${api.url}/api/v1/admin/applications -H "Authorization: Bearer ${config.AUTOMATA_ADMIN_TOKEN}" -H "Content-Type: application/json" -d '{"name":"My App"}'`,
      "",
      "Press Ctrl-C to stop.",
    ].join("\n"),
  );

  worker.done.catch(async (error: unknown) => {
    logger.fatal({ err: error }, "worker stopped unexpectedly");
    await stop("worker failure", true);
  });
  // Nothing restarts them here: without Temporal the API still answers 201 and nothing is sent,
  // without PostgreSQL every request is a 503. Stopping says so at once; all state is durable, and
  // the next `npm start` carries on from it.
  void stack.unexpectedExit.then(async (reason) => {
    // Our own stop() stops them last: their exit then is expected.
    if (stopping) return;
    logger.fatal({ reason }, "a server npm start runs stopped unexpectedly");
    await stop(reason, true);
  });
}

/** "127.0.0.1:9465" as host and port; port 0 (not probed) when it does not parse, for the SDK to judge. */
function hostAndPort(address: string): { host: string; port: number } {
  if (!URL.canParse(`tcp://${address}`)) return { host: address, port: 0 };
  const url = new URL(`tcp://${address}`);
  return { host: url.hostname.replace(/^\[|\]$/g, ""), port: Number(url.port) };
}

/** Set by a signal while starting: the start's own failure (its servers stopped under it) is then expected. */
let startAborted = false;

main().catch((error: unknown) => {
  // The signal handler stops the rest and exits.
  if (startAborted) return;
  // A refusal that says what to do needs no stack trace.
  const refusal = error instanceof PortInUseError ? error.message : isMigrationLocked(error) ? MIGRATION_LOCKED_HINT : undefined;
  if (refusal !== undefined) {
    console.error(`Automata-Signal did not start: ${refusal}`);
    process.exit(1);
  }
  console.error("Automata-Signal failed to start:", error);
  process.exit(1);
});
