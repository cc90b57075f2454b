import { loadConfig } from "./config";
import { createLogger } from "./logger";
import { createDeps, closeDeps, startApiProcessServers } from "./runtime";
import { onShutdownSignal, requireEnv } from "./infra/process";
import { assertEncryptionKeyMatches } from "./crypto/key-check";
import { untilDatabaseAnswers } from "./db/availability";

/**
 * Production API process (`node dist/src/api.js`): serves the REST API against DATABASE_URL and
 * TEMPORAL_ADDRESS. Run migrations separately (`node dist/src/cli/migrate.js`, fly's release command).
 */
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.LOG_LEVEL, "automata-api");
  const databaseUrl = requireEnv("DATABASE_URL", "the API stores everything in PostgreSQL");
  const temporalAddress = requireEnv("TEMPORAL_ADDRESS", "the API starts and signals Temporal workflows");
  const encryptionKey = requireEnv("AUTOMATA_ENCRYPTION_KEY", "device tokens and provider credentials are encrypted at rest (32 bytes, base64 or hex)");
  if (!config.AUTOMATA_ADMIN_TOKEN) logger.warn("AUTOMATA_ADMIN_TOKEN is not set: the admin API refuses every request");
  const deps = await createDeps({ config, logger, databaseUrl, temporalAddress, encryptionKey, statementTimeoutMs: config.AUTOMATA_API_STATEMENT_TIMEOUT });
  // As the worker does: an API restarted during a database outage (a deploy, a `fly secrets set`)
  // waits for PostgreSQL instead of exiting into its platform's restart limit; a wrong key still
  // ends the process. It listens only after the check, so nothing is written with a wrong key.
  await untilDatabaseAnswers(() => assertEncryptionKeyMatches(deps.db, deps.secrets, logger), {
    onUnavailable: (error, retryInMs) => logger.warn({ err: error, retry_in_ms: retryInMs }, "PostgreSQL is unavailable; the API waits for it before listening"),
  });
  // /metrics goes on AUTOMATA_API_METRICS_PORT, not on PORT (which fly.io's proxy and compose publish).
  const servers = await startApiProcessServers(deps, { port: config.PORT, host: config.HOST, metricsPort: config.AUTOMATA_API_METRICS_PORT });
  logger.info({ url: servers.api.url, metricsPort: servers.metrics.port }, "API listening");
  onShutdownSignal(logger, async () => {
    await servers.close();
    await closeDeps(deps);
  });
}

main().catch((error: unknown) => {
  console.error("API failed to start:", error);
  process.exit(1);
});
