import { proxyActivities, type RetryPolicy } from "@temporalio/workflow";
import type { createUserErasureActivities, ErasureResult } from "../activities/user-erasure";

type ErasureActivities = ReturnType<typeof createUserErasureActivities>;

// Erasure is a legal obligation: keep retrying through database outages rather than give up. Only a
// non-retryable failure (the request row does not exist) ends the workflow without completing.
const retry: RetryPolicy = { initialInterval: "5 seconds", backoffCoefficient: 2, maximumInterval: "10 minutes" };

const { markErasureRunning, eraseUserData } = proxyActivities<ErasureActivities>({ startToCloseTimeout: "5 minutes", retry });

// Scrubbing a heavy user's message history can take long; the heartbeat (one per batch) is what
// detects a dead worker, not the overall timeout.
const { scrubUserMessages } = proxyActivities<ErasureActivities>({ startToCloseTimeout: "2 hours", heartbeatTimeout: "1 minute", retry });

/** Workflow id for an erasure request: one workflow per request, so (re)starting it is idempotent. */
export function userErasureWorkflowId(requestId: string): string {
  return `user-erasure-${requestId}`;
}

/**
 * GDPR erasure of one user (REF-001 §3.4); durable, so it completes even across worker restarts.
 * Its input and result hold only the request id and counts, never the user's identifiers, so the
 * Temporal history does not become a copy of the erased data.
 */
export async function userErasureWorkflow(requestId: string): Promise<{ requestId: string; result: ErasureResult | null }> {
  const before = await markErasureRunning(requestId);
  // A duplicate start of an already finished request: nothing left to do.
  if (before === "completed") return { requestId, result: null };
  await scrubUserMessages(requestId);
  const result = await eraseUserData(requestId);
  return { requestId, result };
}
