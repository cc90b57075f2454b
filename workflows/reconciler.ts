import { patched, proxyActivities } from "@temporalio/workflow";
import type { createReconcilerActivities } from "../activities/reconciler";

const { restartOrphanedMessages, restartOrphanedCampaigns, restartPendingErasures, deleteLeftoverCampaignSchedules, expireOverdueReceipts } = proxyActivities<ReturnType<typeof createReconcilerActivities>>({
  startToCloseTimeout: "5 minutes",
  retry: { maximumAttempts: 3 },
});

/** Id of the Temporal Schedule that runs the reconciler. */
export const RECONCILER_SCHEDULE_ID = "message-reconciler";

/**
 * Finds messages, campaigns and erasure requests accepted but left without a running workflow
 * (e.g. the API died between its insert and the workflow start, or Temporal was down) and starts
 * them; expires the receipts a closed workflow left waiting past their window. Run by a Temporal
 * Schedule.
 */
export async function reconcilerWorkflow(options: { olderThanMs: number; limit: number; applicationId?: string; budgetMs?: number }): Promise<{ checked: number; started: number; campaignsStarted: number; erasuresStarted?: number; schedulesDeleted?: number; receiptsExpired?: number }> {
  const messages = await restartOrphanedMessages(options);
  const campaigns = await restartOrphanedCampaigns(options);
  const result: Awaited<ReturnType<typeof reconcilerWorkflow>> = { ...messages, campaignsStarted: campaigns.started };
  // Runs recorded before erasures were reconciled replay without this step.
  if (!patched("reconcile-erasures")) return result;
  result.erasuresStarted = (await restartPendingErasures(options)).started;
  // Runs recorded before leftover schedules were swept replay without this step.
  if (!patched("reconcile-campaign-schedules")) return result;
  result.schedulesDeleted = (await deleteLeftoverCampaignSchedules(options)).deleted;
  // Runs recorded before overdue receipts were expired replay without this step.
  if (!patched("reconcile-overdue-receipts")) return result;
  result.receiptsExpired = (await expireOverdueReceipts(options)).expired;
  return result;
}
