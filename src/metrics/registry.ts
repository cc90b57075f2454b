import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { Knex } from "knex";
import { sumPoolUsage, type PoolUsage, type ProviderPoolUsage } from "../providers";

/**
 * The process's one Prometheus registry. Every metric is defined here, once, so names, labels
 * and buckets stay consistent between the API, the worker and `npm start` (all one registry).
 * Label values are bounded vocabularies only: never ids, tokens or raw URLs.
 */
export const registry = new Registry();

// Node process metrics (CPU, memory, event-loop lag, GC) under our namespace.
collectDefaultMetrics({ register: registry, prefix: "automata_" });

/** HTTP request duration by Express route pattern (`unmatched` for 404s) and status code. */
export const httpRequestDuration = new Histogram({
  name: "automata_http_request_duration_seconds",
  help: "HTTP request duration by method, route pattern and status code",
  labelNames: ["method", "route", "status"] as const,
  // Up to 60 s: API statements may run 30 s (AUTOMATA_API_STATEMENT_TIMEOUT), and a p95 must not flatten below that.
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
  registers: [registry],
});

/** Message lifecycle events (accepted, sent, failed, errored, retried, received, converted, cancelled), counted after commit. */
export const messagesTotal = new Counter({
  name: "automata_messages_total",
  help: "Message lifecycle events by event, channel and provider",
  labelNames: ["event", "channel", "provider"] as const,
  registers: [registry],
});

/** Latency of one provider send by provider (apns, fcm) and outcome (success, permanent, temporary, exception). */
export const providerRequestDuration = new Histogram({
  name: "automata_provider_request_duration_seconds",
  help: "Duration of one push provider request by provider and outcome",
  labelNames: ["provider", "outcome"] as const,
  // Up to 3 min: a campaign message's duration is its chunk's call, which may queue 2 min for a connection.
  buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 180],
  registers: [registry],
});

/** Provider sends that did not succeed, by provider and normalised reason (bad_token, service_unavailable …). */
export const providerErrorsTotal = new Counter({
  name: "automata_provider_errors_total",
  help: "Push provider errors by provider and normalised reason",
  labelNames: ["provider", "reason"] as const,
  registers: [registry],
});

/** Temporary send failures that schedule a retry, by retry class (network, provider_outage, rate_limited). */
export const messageRetriesTotal = new Counter({
  name: "automata_message_retries_total",
  help: "Temporary delivery failures that schedule a retry, by retry class",
  labelNames: ["class"] as const,
  registers: [registry],
});

/**
 * Records one message's provider answer: its duration (for a campaign batch, the duration of the
 * batch call that carried it: per-message times are not known) and, unless it succeeded, its reason.
 */
export function observeProviderOutcome(provider: string, outcome: { kind: string; reason?: string }, seconds: number): void {
  providerRequestDuration.observe({ provider, outcome: outcome.kind }, seconds);
  if (outcome.kind !== "success") providerErrorsTotal.inc({ provider, reason: outcome.reason ?? outcome.kind });
}

/** Messages refused for quota, by period (daily, monthly, credit), at the API check and at the workflow's debit (a refused batch counts its messages). */
export const quotaRejectionsTotal = new Counter({
  name: "automata_quota_rejections_total",
  help: "Messages refused because a quota period or the credit is exhausted",
  labelNames: ["period"] as const,
  registers: [registry],
});

/** Ledger transfers committed, by reason (quota_debit, quota_charge, quota_refund …). */
export const ledgerTransfersTotal = new Counter({
  name: "automata_ledger_transfers_total",
  help: "Double-entry ledger transfers committed, by reason",
  labelNames: ["reason"] as const,
  registers: [registry],
});

/**
 * Fires of recurring campaigns that made no run, by reason: `late` (past the catch-up window),
 * `paused` (campaign paused or application deactivated), `repeated_wall_time` (a DST fall-back's
 * second fire), `ended`. Fires Temporal itself skips (overlap) never reach a worker: those show in
 * the schedule (Temporal UI → Schedules).
 */
export const campaignFiresSkippedTotal = new Counter({
  name: "automata_campaign_fires_skipped_total",
  help: "Recurring campaign fires that made no run, by reason",
  labelNames: ["reason"] as const,
  registers: [registry],
});
// Each reason from 0: such skips are rare and a worker restart resets the count, so most are a
// series' first step, which increase() and rate() cannot see on a series that starts at 1.
for (const reason of ["late", "paused", "repeated_wall_time", "ended"]) campaignFiresSkippedTotal.inc({ reason }, 0);

/** Failures of on-scrape collectors (backlog SQL, Temporal SDK endpoint); the scrape still answers. */
export const metricsCollectErrorsTotal = new Counter({
  name: "automata_metrics_collect_errors_total",
  help: "Errors while collecting on-scrape metrics, by collector",
  labelNames: ["collector", "error"] as const,
  registers: [registry],
});

const BACKLOG_CACHE_MS = 10_000;
/**
 * Longest a scrape waits for the backlog query. prom-client renders nothing until every collector
 * answers, so a query queued behind a busy pool (slow providers hold the worker's connections) or
 * sent to a database that vanished held the whole scrape past Prometheus's timeout: every series
 * gapped just when they mattered. Past this the backlog gauges leave their sample out; the query
 * goes on, and a later scrape uses its answer.
 */
export const BACKLOG_SCRAPE_WAIT_MS = 2_000;
let backlogDb: Knex | undefined;

/** One reading of the backlog gauges. */
type BacklogReading = { count: number; oldestAgeSeconds: number };
let backlogCache: (BacklogReading & { at: number }) | undefined;
let backlogReading: Promise<BacklogReading | undefined> | undefined;
/** What scrapes wait for: the reading, or nothing once BACKLOG_SCRAPE_WAIT_MS has passed. */
let backlogAnswer: Promise<BacklogReading | undefined> | undefined;
/** A reading that finished after its scrape stopped waiting, for the next scrape. */
let lateBacklogReading: BacklogReading | undefined;

async function queryBacklog(db: Knex): Promise<BacklogReading | undefined> {
  let row: { count: string; oldest: string | null } | undefined;
  try {
    // Served by the partial index messages_pending_created_at_idx; cached so scrapes stay cheap.
    const result = await db.raw<{ rows: Array<{ count: string; oldest: string | null }> }>(
      "select count(*) as count, extract(epoch from now() - min(created_at)) as oldest from messages where status = 'pending'",
    );
    row = result.rows[0];
  } catch (error) {
    // A scrape must not fail because the database is briefly unreachable; the error counter says it happened.
    metricsCollectErrorsTotal.inc({ collector: "backlog", error: (error as { code?: string }).code ?? "error" });
    return undefined;
  }
  backlogCache = { at: Date.now(), count: Number(row?.count ?? 0), oldestAgeSeconds: Number(row?.oldest ?? 0) };
  return backlogCache;
}

async function readBacklog(): Promise<BacklogReading | undefined> {
  if (!backlogDb) return undefined;
  if (lateBacklogReading) {
    const late = lateBacklogReading;
    // Both gauges of this scrape collect at once: keep it until the event loop moves on.
    setImmediate(() => {
      if (lateBacklogReading === late) lateBacklogReading = undefined;
    });
    return late;
  }
  if (backlogCache && Date.now() - backlogCache.at < BACKLOG_CACHE_MS) return backlogCache;
  // prom-client collects every metric at once: both backlog gauges share one query, not one each.
  const reading = (backlogReading ??= queryBacklog(backlogDb).finally(() => {
    backlogReading = undefined;
  }));
  // Shared like the reading, so one scrape's two gauges time out (and count it) once.
  backlogAnswer ??= new Promise<BacklogReading | undefined>((resolve) => {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      metricsCollectErrorsTotal.inc({ collector: "backlog", error: "timeout" });
      resolve(undefined);
    }, BACKLOG_SCRAPE_WAIT_MS);
    timer.unref();
    void reading.then((answer) => {
      clearTimeout(timer);
      // Finished after its scrape gave up: the next scrape shows it whatever its age, or a query
      // that always takes longer than the wait (but less than the scrape interval) would never be seen.
      if (timedOut) lateBacklogReading = answer;
      resolve(answer);
    });
  }).finally(() => {
    backlogAnswer = undefined;
  });
  return backlogAnswer;
}

/** Messages waiting to be sent (status pending), read from PostgreSQL on scrape (cached 10 s). */
export const messagesPending = new Gauge({
  name: "automata_messages_pending",
  help: "Messages in status pending (accepted, not yet sent), all applications",
  registers: [registry],
  async collect() {
    const backlog = await readBacklog();
    // Unknown is neither 0 nor the last value read: without a reading the sample is left out, so a
    // database outage shows as a gap (and in automata_metrics_collect_errors_total), not a frozen backlog.
    if (backlog) this.set(backlog.count);
    else this.remove({});
  },
});

/** Age of the oldest pending message in seconds (0 when none), read on scrape (cached 10 s). */
export const oldestPendingAge = new Gauge({
  name: "automata_messages_oldest_pending_age_seconds",
  help: "Age in seconds of the oldest message still pending",
  registers: [registry],
  async collect() {
    const backlog = await readBacklog();
    // As for automata_messages_pending: no reading, no sample (a stale age would hide a growing one).
    if (backlog) this.set(backlog.oldestAgeSeconds);
    else this.remove({});
  },
});

const providerPoolSources = new Set<() => ProviderPoolUsage>();

/** A gauge of one pool figure per provider, summed over the running workers' pools on scrape. */
function providerPoolGauge(name: string, help: string, field: keyof PoolUsage): Gauge<"provider"> {
  return new Gauge({
    name,
    help,
    labelNames: ["provider"] as const,
    registers: [registry],
    collect() {
      const usage = sumPoolUsage([...providerPoolSources].map((source) => source()));
      for (const provider of ["apns", "fcm"] as const) this.set({ provider }, usage[provider][field]);
    },
  });
}

/** Open connections to each push provider from this process's workers. */
export const providerConnections = providerPoolGauge("automata_provider_connections", "Open connections to the push provider (all applications)", "connections");

/** Provider requests sent and not yet answered. */
export const providerRequestsInFlight = providerPoolGauge("automata_provider_requests_in_flight", "Push provider requests sent and not yet answered (all applications)", "inFlight");

/** Provider requests waiting for a connection: high for long means the pool, not the provider, limits sending. */
export const providerRequestsQueued = providerPoolGauge(
  "automata_provider_requests_queued",
  "Push provider requests waiting for a free connection or stream (all applications)",
  "queued",
);

/** Adds a running worker's provider pools to the pool gauges; answers the function that removes them. */
export function addProviderPoolSource(source: () => ProviderPoolUsage): () => void {
  providerPoolSources.add(source);
  return () => providerPoolSources.delete(source);
}

/** Lets the backlog gauges read this database on scrape; the last process component to call it wins. */
export function setBacklogSource(db: Knex | undefined): void {
  backlogDb = db;
  backlogCache = undefined;
  backlogReading = undefined;
  backlogAnswer = undefined;
  lateBacklogReading = undefined;
}

/** Provider label for a message: the provider that handled it, else the platform its subscription type goes to. */
export function providerLabel(message: { provider?: string | null; subscription_type?: string | null }): string {
  if (message.provider) return message.provider;
  if (message.subscription_type === "iOSPush") return "apns";
  if (message.subscription_type === "AndroidPush") return "fcm";
  return "unknown";
}
