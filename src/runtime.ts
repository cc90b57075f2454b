import http from "node:http";
import { listen } from "./infra/http-server";
import { Client, Connection } from "@temporalio/client";
import type { Logger } from "pino";
import type { Config } from "./config";
import type { Deps } from "./deps";
import { createDb, WORKER_LOCK_TIMEOUT_MS } from "./db/knex";
import { SecretBox, parseMasterKey } from "./crypto/secret-box";
import { createHttpApp } from "./http/app";
import { answerClientErrorsInApiFormat } from "./http/client-errors";
import { apiRoutes } from "./api-routes";
import { PushDelivery, type SimulatorTarget } from "./messages/delivery";
import { startMetricsServer, type MetricsServer } from "./metrics/exposition";

/** Where the process's infrastructure lives and which key protects secrets at rest. */
export interface RuntimeOptions {
  config: Config;
  logger: Logger;
  databaseUrl: string;
  temporalAddress: string;
  encryptionKey: string;
  /** Largest PostgreSQL pool for this process (default: the config's AUTOMATA_DB_POOL_MAX). */
  poolMax?: number;
  /** Send pushes of applications without credentials to this provider simulator. */
  simulator?: SimulatorTarget;
  /**
   * Cancel any statement of this pool that runs longer (the API's pool: AUTOMATA_API_STATEMENT_TIMEOUT).
   * Workers leave it unset: their bulk statements are paced by Temporal's timeouts instead.
   */
  statementTimeoutMs?: number;
  /**
   * Worker processes: open {@link Deps.campaignDb}, of AUTOMATA_CAMPAIGN_DB_POOL_MAX (default: this
   * pool's size), and give both pools WORKER_LOCK_TIMEOUT_MS.
   */
  campaignPool?: boolean;
}

/** Opens the database pool and the Temporal client: the dependencies every entry point shares. */
export async function createDeps(options: RuntimeOptions): Promise<Deps> {
  const poolMax = options.poolMax ?? options.config.AUTOMATA_DB_POOL_MAX;
  // Created first: createDb binds objection's models to the pool it makes last, which must be `db`.
  const lockTimeoutMs = options.campaignPool ? WORKER_LOCK_TIMEOUT_MS : 0;
  const campaignDb = options.campaignPool ? createDb(options.databaseUrl, options.config.AUTOMATA_CAMPAIGN_DB_POOL_MAX ?? poolMax, { lockTimeoutMs }) : undefined;
  const db = createDb(options.databaseUrl, poolMax, { statementTimeoutMs: options.statementTimeoutMs, lockTimeoutMs });
  // Lazy: the API accepts messages while Temporal is down (the reconciler starts their workflows
  // later), so a process started during an outage must come up rather than exit; /readyz says so.
  const connection = Connection.lazy({ address: options.temporalAddress });
  const temporal = new Client({ connection, namespace: options.config.TEMPORAL_NAMESPACE });
  const secrets = new SecretBox(parseMasterKey(options.encryptionKey), { bind: options.config.AUTOMATA_SEAL_BOUND === "on" });
  return {
    config: options.config,
    db,
    temporal,
    secrets,
    logger: options.logger,
    push: new PushDelivery(db, secrets, options.logger, options.simulator, options.config.AUTOMATA_FCM_CONNECTIONS),
    ...(campaignDb ? { campaignDb } : {}),
  };
}

/** Closes what {@link createDeps} opened. */
export async function closeDeps(deps: Deps): Promise<void> {
  await deps.push.close();
  await deps.temporal.connection.close();
  await deps.db.destroy();
  await deps.campaignDb?.destroy();
}

/** A listening API server and how to drain it. */
export interface ApiServer {
  server: http.Server;
  url: string;
  close(): Promise<void>;
}

/** How {@link startApiServer} serves. */
export interface ApiServerOptions {
  /**
   * Serve `GET /metrics` on the API's own port (default true: the all-in-one `npm start`, tests and
   * benchmarks scrape one port). The production API turns it off and serves metrics on
   * AUTOMATA_API_METRICS_PORT, which no public proxy routes to.
   */
  serveMetrics?: boolean;
}

/** Serves the REST API; `close` stops accepting connections and lets in-flight requests finish. */
export async function startApiServer(deps: Deps, port: number, host = "0.0.0.0", options: ApiServerOptions = {}): Promise<ApiServer> {
  const app = createHttpApp(deps, apiRoutes, { serveMetrics: options.serveMetrics ?? true });
  const server = http.createServer(app);
  server.keepAliveTimeout = 65_000;
  answerClientErrorsInApiFormat(server);
  const listening = await listen(server, port, host);
  return { server, url: `http://localhost:${listening.port}`, close: listening.close };
}

/** The production API process's two listeners. */
export interface ApiProcessServers {
  api: ApiServer;
  metrics: MetricsServer;
  /** Drains the API, then stops the metrics server. */
  close(): Promise<void>;
}

/**
 * What `node dist/src/api.js` serves: the REST API on `port` without `/metrics` (the public proxy
 * routes that port, and /metrics is unauthenticated with every tenant's totals), and `/metrics` +
 * `/healthz` on `metricsPort`, as the worker does.
 */
export async function startApiProcessServers(deps: Deps, at: { port: number; host: string; metricsPort: number }): Promise<ApiProcessServers> {
  const api = await startApiServer(deps, at.port, at.host, { serveMetrics: false });
  const metrics = await startMetricsServer(deps.logger, at.metricsPort, at.host);
  return {
    api,
    metrics,
    close: async () => {
      await api.close();
      await metrics.close();
    },
  };
}
