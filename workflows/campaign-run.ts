import { executeChild, log, ParentClosePolicy, patched, proxyActivities, workflowInfo } from "@temporalio/workflow";
import { WorkflowExecutionAlreadyStartedError } from "@temporalio/common";
import type { createCampaignRunActivities } from "../activities/campaign-runs";
import { ApplicationIdKey, CampaignIdKey } from "../temporal/search-attributes";
import { campaignWorkflow, campaignWorkflowId, type CampaignProgress } from "./campaign";
import { ACTIVITY_RETRY } from "./activity-retry";

const { createCampaignRun } = proxyActivities<ReturnType<typeof createCampaignRunActivities>>({
  startToCloseTimeout: "1 minute",
  retry: ACTIVITY_RETRY,
});

// A run may send for a day (timezone delivery) or stay paused far longer; the heartbeat notices a
// dead worker within a minute.
const { awaitRunCampaignWorkflow } = proxyActivities<ReturnType<typeof createCampaignRunActivities>>({
  startToCloseTimeout: "3650 days",
  heartbeatTimeout: "1 minute",
  retry: ACTIVITY_RETRY,
});

/** Input of {@link campaignRunWorkflow}: the recurring (parent) campaign. */
export interface CampaignRunInput {
  campaignId: string;
}

/**
 * One fire of a recurring campaign's Temporal Schedule. Creates the run's campaign row (keyed by
 * this workflow's id, which Temporal makes unique per fire, so a retry creates no second row),
 * then runs the ordinary campaign workflow for it as a child, so each run appears under the
 * schedule and as its own campaign. Answers null when the fire is skipped (the campaign is paused
 * or ended in PostgreSQL, whatever the schedule's state).
 */
export async function campaignRunWorkflow({ campaignId }: CampaignRunInput): Promise<CampaignProgress | null> {
  const input = await createCampaignRun({ parentCampaignId: campaignId, runKey: workflowInfo().workflowId });
  if (!input) return null;
  try {
    return await executeChild(campaignWorkflow, {
      workflowId: campaignWorkflowId(input.campaignId),
      args: [input],
      // ABANDON: the campaign workflow owns its run's status and messages; terminating this wrapper
      // (or the schedule's overlap handling) must not leave a half-sent run stuck "running".
      parentClosePolicy: ParentClosePolicy.ABANDON,
      typedSearchAttributes: [
        { key: CampaignIdKey, value: input.campaignId },
        { key: ApplicationIdKey, value: input.applicationId },
      ],
    });
  } catch (error) {
    // The reconciler already started this run's campaign workflow (this wrapper stalled between
    // creating the row and starting the child): the run proceeds there, and this wrapper stays
    // open until it ends so the schedule still sees the fire running (histories from before this
    // step ended at once).
    if (error instanceof WorkflowExecutionAlreadyStartedError) {
      log.info("run's campaign workflow already started", { runCampaignId: input.campaignId });
      if (patched("campaign-run-waits-for-reconciled-run")) await awaitRunCampaignWorkflow(input.campaignId);
      return null;
    }
    throw error;
  }
}
