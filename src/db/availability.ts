/**
 * Errors that mean "PostgreSQL cannot be reached or cannot take this request now", not "this
 * request is wrong": the API answers them with 503 and Retry-After, so clients retry instead of
 * treating the failure as a bug on our side.
 */

// SQLSTATE class 08 (connection exception) is matched by prefix; these are the others that mean
// the server is going away, starting, or out of connections.
// 25006 (read-only transaction): a failover routed the connection to a node not yet promoted.
const UNAVAILABLE_SQLSTATES = new Set(["57P01", "57P02", "57P03", "53300", "25006"]);
// Socket-level failures from the pg driver while connecting or mid-query.
const UNAVAILABLE_ERRNOS = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "EAI_AGAIN",
  // The database's host name does not resolve: compose's DNS drops a stopped container's name.
  "ENOTFOUND"]);

/** Whether `error` says the database is unavailable (down, restarting, or no pooled connection freed in time). */
export function isDatabaseUnavailable(error: unknown): boolean {
  if (typeof error !== "object" || error === null) return false;
  const { name, code, message } = error as { name?: unknown; code?: unknown; message?: unknown };
  // knex: no pooled connection within acquireConnectionTimeout (the server is down or saturated).
  if (name === "KnexTimeoutError") return true;
  // 08P01 (protocol violation) is in class 08 but is raised for a malformed query (over 65,535 bind
  // parameters), a bug a retry would only repeat.
  if (typeof code === "string" && ((code.startsWith("08") && code !== "08P01") || UNAVAILABLE_SQLSTATES.has(code) || UNAVAILABLE_ERRNOS.has(code))) return true;
  // A Unix-socket connection to a stopped server: its socket file is gone (TCP's ECONNREFUSED).
  if (code === "ENOENT" && (error as { syscall?: unknown }).syscall === "connect") return true;
  // pg reports a server that closed the socket mid-query with these messages and no code. knex
  // prefixes the query ("select … - Connection terminated unexpectedly"), and in a transaction
  // answers the failed ROLLBACK's error ("ROLLBACK - Client has encountered a connection error and
  // is not queryable") instead of the first one.
  return typeof message === "string" && /(^| - )(Connection terminated|Client has encountered a connection error)/.test(message);
}

// PostgreSQL aborted the transaction for another one's sake: it was a deadlock victim or lost a
// serialization race. Running the whole transaction again may succeed.
const RERUNNABLE_SQLSTATES = new Set(["40P01" /* deadlock_detected */, "40001" /* serialization_failure */]);

function sqlstateOf(error: unknown): string | undefined {
  const code = typeof error === "object" && error !== null ? (error as { code?: unknown }).code : undefined;
  return typeof code === "string" ? code : undefined;
}

/** Whether PostgreSQL aborted the work as a deadlock victim or a serialization failure, so running it again may succeed. */
export function isRerunnable(error: unknown): boolean {
  return RERUNNABLE_SQLSTATES.has(sqlstateOf(error) ?? "");
}

/**
 * Whether PostgreSQL cancelled the statement (57014 query_canceled): its statement_timeout ran out,
 * or an operator cancelled it.
 */
export function isStatementCancelled(error: unknown): boolean {
  return typeof error === "object" && error !== null && (error as { code?: unknown }).code === "57014";
}

/**
 * Whether `error` is a write conflict with a concurrent transaction that a retry resolves: a rerunnable
 * abort, or a lock wait given up (55P03 lock_not_available: a `lock_timeout`, e.g. a cancel waiting
 * behind a slow provider call).
 */
export function isTransientConflict(error: unknown): boolean {
  return isRerunnable(error) || sqlstateOf(error) === "55P03";
}

/** Pacing of {@link untilDatabaseAnswers}. */
export interface DatabaseWaitOptions {
  /** First wait after a failure; doubles up to maxDelayMs. */
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** Injected in tests. */
  sleep?: (ms: number) => Promise<void>;
  /** Told about each failure that will be retried. */
  onUnavailable?: (error: unknown, retryInMs: number) => void;
}

/**
 * Runs `work` until it succeeds or fails for a reason other than an unavailable database
 * ({@link isDatabaseUnavailable}), which is thrown. A worker started during a database outage
 * waits for the database this way instead of exiting: fly restarts a failed machine at most 10
 * times, and nothing wakes a stopped worker, which serves no traffic.
 */
export async function untilDatabaseAnswers<T>(work: () => Promise<T>, options: DatabaseWaitOptions = {}): Promise<T> {
  const { initialDelayMs = 1_000, maxDelayMs = 30_000, sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)), onUnavailable } = options;
  for (let delay = initialDelayMs; ; delay = Math.min(maxDelayMs, delay * 2)) {
    try {
      return await work();
    } catch (error) {
      if (!isDatabaseUnavailable(error)) throw error;
      onUnavailable?.(error, delay);
      await sleep(delay);
    }
  }
}
