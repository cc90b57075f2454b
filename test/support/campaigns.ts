import type { WorkflowHandleWithFirstExecutionRunId } from "@temporalio/client";
import { newId } from "../../src/db/ids";
import { campaignWorkflow, campaignWorkflowId, resumeSignal, type CampaignWorkflowInput } from "../../workflows/campaign";
import { campaignRunWorkflow } from "../../workflows/campaign-run";
import { createCampaignRunActivities } from "../../activities/campaign-runs";
import { campaignRunWorkflowIdPrefix } from "../../src/campaigns/schedules";
import { ApplicationIdKey, CampaignIdKey } from "../../temporal/search-attributes";
import type { TestApp } from "./harness";

/**
 * Inserts a `running` one-shot campaign straight into PostgreSQL (title "t", body "b"), as the API
 * leaves one before its workflow starts; `extra` overrides any column. Answers its id.
 */
export async function insertRunningCampaign(
  app: TestApp,
  applicationId: string,
  name: string,
  targetingCriteria: Record<string, unknown>,
  extra: Record<string, unknown> = {},
): Promise<string> {
  const id = newId();
  await app.deps.db("message_campaigns").insert({
    id,
    application_id: applicationId,
    name,
    content: JSON.stringify({ title: "t", body: "b", data: {}, options: {}, variables: {} }),
    targeting_criteria: JSON.stringify(targetingCriteria),
    status: "running",
    started_at: new Date(),
    ...extra,
  });
  return id;
}

/** Starts a campaign's workflow directly on the test app's task queue, with paging and timing chosen by the test. */
export function startTestCampaignWorkflow(
  app: TestApp,
  campaign: { campaignId: string; applicationId: string },
  run: Omit<CampaignWorkflowInput, "campaignId" | "applicationId" | "scheduledAt" | "throttlePerMinute"> & { throttlePerMinute?: number | null },
): Promise<WorkflowHandleWithFirstExecutionRunId<typeof campaignWorkflow>> {
  return app.deps.temporal.workflow.start(campaignWorkflow, {
    workflowId: campaignWorkflowId(campaign.campaignId),
    taskQueue: app.config.TEMPORAL_TASK_QUEUE,
    args: [{ ...campaign, scheduledAt: null, throttlePerMinute: null, ...run }],
    typedSearchAttributes: [
      { key: CampaignIdKey, value: campaign.campaignId },
      { key: ApplicationIdKey, value: campaign.applicationId },
    ],
  });
}

/**
 * What a stalled run wrapper leaves for the reconciler: one fire's run row of the recurring
 * campaign `parentId` (paused, so it is still going) with its campaign workflow already started,
 * then the wrapper started for the same fire. `resume` lets the run finish.
 */
export async function startRunBeforeItsWrapper(app: TestApp, parentId: string, fireAt = "2031-01-01T09:00:00Z") {
  const runKey = `${campaignRunWorkflowIdPrefix(parentId)}-${fireAt}`;
  const input = await createCampaignRunActivities(app.deps).createCampaignRun({ parentCampaignId: parentId, runKey });
  if (!input) throw new Error(`no run was created for ${runKey}`);
  await app.deps.db("message_campaigns").where("id", input.campaignId).update({ status: "paused" });
  const run = await app.deps.temporal.workflow.start(campaignWorkflow, { workflowId: campaignWorkflowId(input.campaignId), taskQueue: app.config.TEMPORAL_TASK_QUEUE, args: [{ ...input, statusPollMs: 300 }] });
  const wrapper = await app.deps.temporal.workflow.start(campaignRunWorkflow, { workflowId: runKey, taskQueue: app.config.TEMPORAL_TASK_QUEUE, args: [{ campaignId: parentId }] });
  const resume = async (): Promise<void> => {
    await app.deps.db("message_campaigns").where("id", input.campaignId).update({ status: "running" });
    await run.signal(resumeSignal);
  };
  return { run, wrapper, resume };
}
