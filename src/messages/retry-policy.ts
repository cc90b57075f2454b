/**
 * Retry schedules by failure class (SEQ-003 §9, SEQ-002 §6). Pure and deterministic, so the message
 * workflow can call it and the retry loop stays visible in workflow history as timers.
 */

/** Classes of temporary failure, each with its own schedule. */
export type RetryClass = "network" | "provider_outage" | "rate_limited";

const SECOND = 1_000;
const MINUTE = 60 * SECOND;

/** Delays before each retry, per class; the list length is the number of retries allowed. */
export const RETRY_SCHEDULES: Record<RetryClass, readonly number[]> = {
  // Exponential-ish backoff: 5 tries in all (the first attempt plus 4 retries).
  network: [30 * SECOND, 2 * MINUTE, 5 * MINUTE, 15 * MINUTE],
  // Linear every 15 minutes for up to 6 hours (24 tries in all).
  provider_outage: Array.from({ length: 23 }, () => 15 * MINUTE),
  // 1, 2, then 5 minutes (a longer Retry-After waits longer): 3 retries.
  rate_limited: [1 * MINUTE, 2 * MINUTE, 5 * MINUTE],
};

/**
 * SQL for an errored campaign message's retry class (`error_details.class`), `network` when it has
 * none it could be retried by (a row whose details were erased): a class nothing retries would
 * leave the message errored for good, and its batch waiting for it.
 */
export const ERRORED_RETRY_CLASS_SQL = `CASE WHEN error_details->>'class' IN (${Object.keys(RETRY_SCHEDULES).map((c) => `'${c}'`).join(", ")}) THEN error_details->>'class' ELSE 'network' END`;

/** Longest Retry-After we honour; a provider asking for more is retried after this long. */
export const MAX_RETRY_AFTER_MS = 60 * MINUTE;

/**
 * Largest share of a delay added as jitter: many messages or batches that failed together (one
 * provider 429 or outage) wake spread over this much more, not in the same instant. Only added,
 * never taken off, so a provider's Retry-After is always honoured.
 */
export const RETRY_JITTER = 0.2;

/** patched() id of the jitter in the message and batch workflows: histories before it replay without it. */
export const RETRY_JITTER_PATCH = "retry-jitter";

/**
 * patched() id of {@link nextRetryDelay}'s Retry-After floor in the message and batch workflows:
 * histories before it replay with the Retry-After replacing the rate-limit schedule.
 */
export const RETRY_AFTER_FLOOR_PATCH = "retry-after-floor";

/**
 * Delay before retry number `retryNumber` (1-based) of a class, or undefined when that class's
 * retries are exhausted. `scale` shrinks every delay (tests run the 6-hour schedule in seconds).
 * `jitter` in [0, 1) (a workflow's deterministic Math.random()) lengthens it by up to RETRY_JITTER.
 *
 * A provider's Retry-After (any class: APNs and FCM send it with 503s too) lengthens the planned
 * delay, never shortens it: retries are counted, so a 429 with `Retry-After: 1` that replaced the
 * schedule spent all three rate-limit retries in seconds while the quota was still exceeded.
 * `legacyRetryAfter` gives the rule of workflows started before {@link RETRY_AFTER_FLOOR_PATCH}:
 * a rate limit's Retry-After replaced the schedule and other classes ignored it.
 */
export function nextRetryDelay(retryClass: RetryClass, retryNumber: number, scale = 1, retryAfterMs?: number, jitter = 0, legacyRetryAfter = false): number | undefined {
  const schedule = RETRY_SCHEDULES[retryClass];
  const planned = schedule[retryNumber - 1];
  if (planned === undefined) return undefined;
  const asked = retryAfterMs !== undefined && retryAfterMs > 0 ? Math.min(retryAfterMs, MAX_RETRY_AFTER_MS) : undefined;
  const base = asked === undefined ? planned : legacyRetryAfter ? (retryClass === "rate_limited" ? asked : planned) : Math.max(planned, asked);
  const spread = 1 + RETRY_JITTER * Math.min(Math.max(jitter, 0), 1);
  return Math.max(1, Math.round(base * scale * spread));
}
