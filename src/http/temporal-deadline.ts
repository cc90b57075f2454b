import type { Deps } from "../deps";

/**
 * How long an API request waits on Temporal for work PostgreSQL already holds (starting accepted
 * messages or campaigns, signalling a recorded change). The SDK would otherwise retry an
 * unreachable server for ~20 s per request; the reconciler and the workflows' own reads of
 * PostgreSQL cover what is cut short.
 */
export const API_TEMPORAL_DEADLINE_MS = 5_000;

/** Runs `call`'s Temporal requests with the API's deadline ({@link API_TEMPORAL_DEADLINE_MS}). */
export function withinApiDeadline<T>(deps: Pick<Deps, "temporal">, call: () => Promise<T>): Promise<T> {
  return deps.temporal.withDeadline(Date.now() + API_TEMPORAL_DEADLINE_MS, call);
}
