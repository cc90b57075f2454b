import http from "node:http";
import { listen } from "./infra/http-server";
import { Client, Connection } from "@temporalio/client";
import type { Logger } from "pino";
import type { Config } from "./config";
import type { Deps } from "./deps";
import { createDb } from "./db/knex";
import { SecretBox, parseMasterKey } from "./crypto/secret-box";
import { createHttpApp } from "./http/app";
import { apiRoutes } from "./api-routes";
import { PushDelivery, type SimulatorTarget } from "./messages/delivery";

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
}

/** Opens the database pool and the Temporal client: the dependencies every entry point shares. */
export async function createDeps(options: RuntimeOptions): Promise<Deps> {
  const db = createDb(options.databaseUrl, options.poolMax ?? options.config.AUTOMATA_DB_POOL_MAX);
  const connection = await Connection.connect({ address: options.temporalAddress });
  const temporal = new Client({ connection, namespace: options.config.TEMPORAL_NAMESPACE });
  const secrets = new SecretBox(parseMasterKey(options.encryptionKey), { bind: options.config.AUTOMATA_SEAL_BOUND === "on" });
  return {
    config: options.config,
    db,
    temporal,
    secrets,
    logger: options.logger,
    push: new PushDelivery(db, secrets, options.logger, options.simulator, options.config.AUTOMATA_FCM_CONNECTIONS),
  };
}

/** Closes what {@link createDeps} opened. */
export async function closeDeps(deps: Deps): Promise<void> {
  await deps.push.close();
  await deps.temporal.connection.close();
  await deps.db.destroy();
}

/** A listening API server and how to drain it. */
export interface ApiServer {
  server: http.Server;
  url: string;
  close(): Promise<void>;
}

/** Serves the REST API; `close` stops accepting connections and lets in-flight requests finish. */
export async function startApiServer(deps: Deps, port: number, host = "0.0.0.0"): Promise<ApiServer> {
  const app = createHttpApp(deps, apiRoutes);
  const server = http.createServer(app);
  server.keepAliveTimeout = 65_000;
  const listening = await listen(server, port, host);
  return { server, url: `http://localhost:${listening.port}`, close: listening.close };
}
