import path from "node:path";
import { z } from "zod";

/**
 * Parses a duration like "72h", "30d", "15m", "5s" or "250ms" into milliseconds. A unit is required
 * (only "0" may go without): a bare "72" meant as hours made every receipt time out after 72 ms.
 */
export function parseDuration(value: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/.exec(value.trim());
  if (!match) throw new Error(`invalid duration "${value}" (use e.g. 250ms, 5s, 15m, 72h, 30d)`);
  const amount = Number(match[1]);
  if (match[2] === undefined && amount !== 0) throw new Error(`duration "${value}" needs a unit: ms, s, m, h or d (e.g. ${value}s, ${value}m)`);
  const unit = match[2] ?? "ms";
  const factor = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[unit] ?? 1;
  return Math.round(amount * factor);
}

/** A duration setting, between `min` and `max` milliseconds when given (checked at start, not at first use). */
const duration = (fallback: string, bounds: { min?: number; max?: number } = {}) =>
  z
    .string()
    .default(fallback)
    .transform((v, ctx) => {
      try {
        const ms = parseDuration(v);
        if (bounds.min !== undefined && ms < bounds.min) throw new Error(`"${v}" is below the minimum of ${bounds.min} ms`);
        if (bounds.max !== undefined && ms > bounds.max) throw new Error(`"${v}" is above the maximum of ${bounds.max} ms`);
        return ms;
      } catch (error) {
        ctx.addIssue({ code: "custom", message: (error as Error).message });
        return z.NEVER;
      }
    });

/** PostgreSQL refuses a statement_timeout above this (a 32-bit millisecond count). */
const POSTGRES_MAX_TIMEOUT_MS = 2_147_483_647;

/** A body-size limit as express reads it ("256kb", "1mb"); `m` or `k` alone would read as bytes. */
const bodySize = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .refine((v) => /^\d+\s*(b|kb|mb)$/i.test(v.trim()) && Number.parseInt(v, 10) > 0, { message: 'use bytes with a unit: b, kb or mb (e.g. "256kb", "1mb")' });

const port = (fallback: number) => z.coerce.number().int().min(0).max(65535).default(fallback);

const EnvSchema = z.object({
  AUTOMATA_HOME: z.string().default(".automata"),
  PORT: port(8080),
  HOST: z.string().default("0.0.0.0"),
  DATABASE_URL: z.string().optional(),
  AUTOMATA_PG_PORT: port(5433),
  TEMPORAL_ADDRESS: z.string().optional(),
  TEMPORAL_NAMESPACE: z.string().default("default"),
  TEMPORAL_PORT: port(7233),
  TEMPORAL_UI_PORT: port(8233),
  TEMPORAL_TASK_QUEUE: z.string().default("automata-signal"),
  TEMPORAL_CLI: z.string().optional(),
  AUTOMATA_ADMIN_TOKEN: z.string().min(16).optional(),
  AUTOMATA_ENCRYPTION_KEY: z.string().optional(),
  AUTOMATA_PUBLIC_URL: z.string().optional(),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  AUTOMATA_RECEIPT_TIMEOUT: duration("72h", { min: 1_000 }),
  AUTOMATA_CONVERSION_WINDOW: duration("30d", { min: 1_000 }),
  AUTOMATA_PENDING_TIMEOUT: duration("24h", { min: 1_000 }),
  AUTOMATA_RETRY_SCALE: z.coerce.number().positive().default(1),
  AUTOMATA_SHUTDOWN_GRACE: duration("30s"),
  AUTOMATA_RECONCILE_INTERVAL: duration("2m", { min: 1_000 }),
  /** How often a waiting or paused campaign re-reads its status (catches an undelivered signal). */
  AUTOMATA_CAMPAIGN_STATUS_POLL: duration("5m", { min: 1_000 }),
  /** Shortest interval a recurring campaign's cron may fire at (each fire is a run with its own workflows). */
  AUTOMATA_MIN_SCHEDULE_INTERVAL: duration("1m"),
  /**
   * Workflows a worker keeps in its sticky cache. Campaign batches sleep out their receipt window
   * (72 h) by the thousand; bounded, a sleeping batch is evicted and replayed from history when its
   * timer fires, so worker memory stays flat however large the campaign.
   */
  AUTOMATA_WORKER_CACHED_WORKFLOWS: z.coerce.number().int().min(0).default(250),
  /** Batches (of ≤ 500) one campaign keeps sending at once; more overlaps database, provider and Temporal round trips. */
  AUTOMATA_CAMPAIGN_WINDOW: z.coerce.number().int().min(1).max(64).default(16),
  AUTOMATA_RECONCILE_AFTER: duration("1m"),
  AUTOMATA_SIMULATOR: z.enum(["on", "off"]).optional(),
  /**
   * Seal device tokens and provider credentials bound to their application (v2). Off by default in
   * this release, which reads both formats: turned on once no process of an earlier release (which
   * cannot read v2) runs. `npm start` turns it on (one release, all processes).
   */
  AUTOMATA_SEAL_BOUND: z.enum(["on", "off"]).optional(),
  /**
   * HTTP/1.1 connections a worker keeps to FCM per application: FCM sends in flight at once, so
   * Android throughput ≤ connections ÷ round trip. Unset: FCM_DEFAULT_SOCKETS to Google,
   * FCM_SIMULATOR_SOCKETS to the loopback simulator.
   */
  AUTOMATA_FCM_CONNECTIONS: z.coerce.number().int().min(1).max(4096).optional(),
  AUTOMATA_SIMULATOR_APNS_PORT: port(0),
  AUTOMATA_SIMULATOR_FCM_PORT: port(0),
  AUTOMATA_MAX_BODY: bodySize("256kb"),
  /**
   * Longest a statement of the API's pool may run before PostgreSQL cancels it (the request answers
   * 503): one tenant's huge list or analytics query cannot hold the pool every tenant shares. Above
   * the 20 s a cancel waits for a send's row lock. 0 disables it.
   */
  AUTOMATA_API_STATEMENT_TIMEOUT: duration("30s", { max: POSTGRES_MAX_TIMEOUT_MS }),
  /** A worker's second pool, for campaign activities only (default: AUTOMATA_DB_POOL_MAX). */
  AUTOMATA_CAMPAIGN_DB_POOL_MAX: z.coerce.number().int().min(1).max(1000).optional(),
  /**
   * PostgreSQL connections each process keeps at most. A worker's send holds one for the provider's
   * round trip (the message rows stay locked, so a racing cancel waits for the outcome).
   */
  AUTOMATA_DB_POOL_MAX: z.coerce.number().int().min(1).max(1000).default(20),
  /** Port of the worker's own /metrics + /healthz server. */
  AUTOMATA_METRICS_PORT: port(9464),
  /**
   * Port of the production API's /metrics + /healthz server (not PORT, which the public proxy
   * routes); its own default so an API and a worker on one host do not clash.
   */
  AUTOMATA_API_METRICS_PORT: port(9463),
  /** host:port of the Temporal SDK's Prometheus exporter (merged into /metrics); empty disables it. */
  AUTOMATA_TEMPORAL_METRICS_ADDRESS: z.string().default("127.0.0.1:9465"),
});

/** Settings where an empty value is not "unset": empty disables the Temporal SDK's exporter. */
const EMPTY_MEANS_SOMETHING = new Set(["AUTOMATA_TEMPORAL_METRICS_ADDRESS"]);

/** Runtime configuration, read once from the environment; every knob the product has is named here. */
export type Config = z.infer<typeof EnvSchema> & { homeDir: string };

/** Reads and validates configuration from an environment object (defaults to process.env). */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // An empty value is unset (`PORT=` must not become port 0, `DATABASE_URL=` not an empty URL),
  // except where empty has a meaning of its own.
  const set = Object.fromEntries(Object.entries(env).filter(([key, value]) => value !== "" || EMPTY_MEANS_SOMETHING.has(key)));
  const parsed = EnvSchema.safeParse(set);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
    throw new Error(`invalid configuration: ${problems}`);
  }
  return { ...parsed.data, homeDir: path.resolve(parsed.data.AUTOMATA_HOME) };
}
