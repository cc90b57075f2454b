import path from "node:path";
import type { Logger } from "pino";
import type { Config } from "../config";
import { startEmbeddedPostgres, type PostgresHandle } from "./postgres";
import { startTemporalDevServer, ensureSearchAttributes, type TemporalServerHandle } from "../../temporal/launcher";

/** The infrastructure a process needs: a database URL and a Temporal address, with a way to stop what it started. */
export interface LocalStack {
  databaseUrl: string;
  temporalAddress: string;
  temporalUiUrl?: string;
  postgres?: PostgresHandle;
  temporal?: TemporalServerHandle;
  /** Settles with why the embedded PostgreSQL or Temporal exited unasked (never for external ones). */
  unexpectedExit: Promise<string>;
  stop(): Promise<void>;
}

/** Options for {@link startLocalStack}. */
export interface LocalStackOptions {
  /** Run the Temporal dev server without its UI (tests). */
  headless?: boolean;
  /** Delete the embedded database when stopping (tests). */
  ephemeral?: boolean;
}

/**
 * Uses DATABASE_URL / TEMPORAL_ADDRESS when set; otherwise starts embedded PostgreSQL and the
 * Temporal dev server under the data dir. Both are started in parallel: they are independent.
 * They run detached from the terminal, so Ctrl-C reaches the caller alone: the caller must handle
 * SIGINT and SIGTERM and call stop() after its own shutdown (npm start drains the worker first).
 */
export async function startLocalStack(config: Config, logger: Logger, options: LocalStackOptions = {}): Promise<LocalStack> {
  const postgresPromise: Promise<PostgresHandle | undefined> = config.DATABASE_URL
    ? Promise.resolve(undefined)
    : startEmbeddedPostgres({
        dataDir: path.join(config.homeDir, "postgres"),
        port: config.AUTOMATA_PG_PORT,
        database: "automata_signal",
        logger,
        ephemeral: options.ephemeral,
        detached: true,
      });
  const temporalPromise: Promise<TemporalServerHandle | undefined> = config.TEMPORAL_ADDRESS
    ? ensureSearchAttributes(config.TEMPORAL_ADDRESS, config.TEMPORAL_NAMESPACE).then(() => undefined)
    : startTemporalDevServer({
        port: config.TEMPORAL_PORT,
        uiPort: config.TEMPORAL_UI_PORT,
        namespace: config.TEMPORAL_NAMESPACE,
        dbFile: path.join(config.homeDir, "temporal", "temporal.db"),
        headless: options.headless,
        logger,
        detached: true,
      });
  const [postgres, temporal] = await Promise.allSettled([postgresPromise, temporalPromise]);
  if (postgres.status === "rejected" || temporal.status === "rejected") {
    if (postgres.status === "fulfilled") await postgres.value?.stop();
    if (temporal.status === "fulfilled") await temporal.value?.stop();
    throw postgres.status === "rejected" ? postgres.reason : (temporal as PromiseRejectedResult).reason;
  }
  const pgHandle = postgres.value;
  const temporalHandle = temporal.value;
  return {
    databaseUrl: config.DATABASE_URL ?? pgHandle!.url,
    temporalAddress: config.TEMPORAL_ADDRESS ?? temporalHandle!.address,
    temporalUiUrl: temporalHandle?.uiUrl,
    postgres: pgHandle,
    temporal: temporalHandle,
    unexpectedExit: Promise.race([pgHandle?.unexpectedExit, temporalHandle?.unexpectedExit].filter((exit) => exit !== undefined)),
    stop: async () => {
      await Promise.allSettled([temporalHandle?.stop(), pgHandle?.stop()]);
    },
  };
}
