import { proxyActivities } from "@temporalio/workflow";
import type { createUserErasureActivities } from "../activities/user-erasure";

const { eraseUserData } = proxyActivities<ReturnType<typeof createUserErasureActivities>>({
  startToCloseTimeout: "5 minutes",
  // Erasure is a legal obligation: keep retrying through database outages rather than give up.
  retry: { initialInterval: "5 seconds", backoffCoefficient: 2, maximumInterval: "10 minutes" },
});

/** Workflow id for an erasure request: one workflow per request, started idempotently. */
export function userErasureWorkflowId(requestId: string): string {
  return `user-erasure-${requestId}`;
}

/** GDPR erasure of one user (REF-001 §3.4); durable, so it completes even across restarts. */
export async function userErasureWorkflow(requestId: string): Promise<{ requestId: string }> {
  await eraseUserData(requestId);
  return { requestId };
}
