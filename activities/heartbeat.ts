import { heartbeat } from "@temporalio/activity";

/** How often a long activity heartbeats; each workflow's heartbeat timeout is a few of these. */
export const HEARTBEAT_EVERY_MS = 5_000;

/**
 * Runs `work` heartbeating every HEARTBEAT_EVERY_MS, also while one awaited call (a provider, a
 * lock, another workflow's result) takes long, so a dead worker is noticed within the heartbeat
 * timeout while a slow but live one is not mistaken for dead.
 */
export async function heartbeatingWhile<T>(work: () => Promise<T>, details?: () => unknown): Promise<T> {
  const beat = setInterval(() => heartbeat(details?.()), HEARTBEAT_EVERY_MS);
  try {
    return await work();
  } finally {
    clearInterval(beat);
  }
}
