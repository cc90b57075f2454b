import type { Knex } from "knex";
import pLimit from "p-limit";
import type { Deps } from "../deps";
import { lockForTransaction } from "../db/knex";
import { ApiError } from "../http/errors";

/**
 * Keyed creates a process lets wait for a turn before it answers 503: past this a burst is
 * overload, and a queue held in memory would only grow with the request bodies it keeps alive
 * while every waiting client times out anyway.
 */
export const MAX_WAITING_KEYED_CREATES = 200;

/**
 * Runs `work` while holding a PostgreSQL advisory lock on `name` (in a transaction of its own that
 * `work` does not write through), so requests with one Idempotency-Key run one after the other.
 * A crashed process's connection closes and frees the lock.
 */
export async function inIdempotencyTurn<T>(deps: Deps, name: string, work: () => Promise<T>): Promise<T> {
  return takeTurn(turnLimitOf(deps.db), MAX_WAITING_KEYED_CREATES, () =>
    deps.db.transaction(async (turn) => {
      await lockForTransaction(turn, name);
      return work();
    }),
  );
}

/** Runs `work` under `limit`, or refuses it with a retryable 503 when `maxWaiting` calls already wait. */
export function takeTurn<T>(limit: pLimit.Limit, maxWaiting: number, work: () => Promise<T>): Promise<T> {
  if (limit.pendingCount >= maxWaiting) {
    return Promise.reject(
      new ApiError("service_unavailable", "Too many campaign creates with an Idempotency-Key are waiting; retry shortly", { header: "Idempotency-Key" }, { "Retry-After": "1" }),
    );
  }
  return limit(work);
}

const turnLimits = new WeakMap<Knex, pLimit.Limit>();

/**
 * How many keyed creates a process runs at once: each holds its turn's connection while the create
 * takes others from the same pool, so unbounded, a burst of them could hold the whole pool waiting
 * for itself (every request of the process then timing out). A quarter of the pool; the rest wait
 * in memory, not on a connection.
 */
function turnLimitOf(db: Knex): pLimit.Limit {
  let limit = turnLimits.get(db);
  if (!limit) {
    const poolMax = (db.client as { pool?: { max?: number } }).pool?.max ?? 4;
    limit = pLimit(Math.max(1, Math.floor(poolMax / 4)));
    turnLimits.set(db, limit);
  }
  return limit;
}
