import { WorkflowExecutionAlreadyStartedError, WorkflowIdConflictPolicy, WorkflowIdReusePolicy, WorkflowNotFoundError } from "@temporalio/client";
import type { Deps } from "../deps";
import { campaignWorkflow, campaignWorkflowId, type cancelSignal, type executeSignal, type pauseSignal, type resumeSignal } from "../../workflows/campaign";
import { ApplicationIdKey, CampaignIdKey } from "../../temporal/search-attributes";
import type { CampaignRow } from "./repository";

/** Recipients per batch (SEQ-002 §4.1: chunks of 500). */
export const CAMPAIGN_PAGE_SIZE = 500;
/** Batches of one campaign sending at the same time. */
export const CAMPAIGN_BATCH_WINDOW = 4;

/**
 * Starts (or finds) a campaign's workflow; the id is the campaign's business id with USE_EXISTING,
 * so an Idempotency-Key replay or a retried request never starts a second one, and a finished one
 * is only re-run if it failed.
 */
export async function startCampaignWorkflow(deps: Deps, campaign: Pick<CampaignRow, "id" | "application_id" | "scheduled_at" | "throttle_per_minute">): Promise<void> {
  try {
    await start(deps, campaign);
  } catch (error) {
    // Already ran to completion (a replay of a finished campaign): nothing to start.
    if (error instanceof WorkflowExecutionAlreadyStartedError) return;
    throw error;
  }
}

async function start(deps: Deps, campaign: Pick<CampaignRow, "id" | "application_id" | "scheduled_at" | "throttle_per_minute">): Promise<void> {
  await deps.temporal.workflow.start(campaignWorkflow, {
    workflowId: campaignWorkflowId(campaign.id),
    taskQueue: deps.config.TEMPORAL_TASK_QUEUE,
    workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
    workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
    args: [
      {
        campaignId: campaign.id,
        applicationId: campaign.application_id,
        scheduledAt: campaign.scheduled_at ? new Date(campaign.scheduled_at).getTime() : null,
        timing: { receiptTimeoutMs: deps.config.AUTOMATA_RECEIPT_TIMEOUT, retryScale: deps.config.AUTOMATA_RETRY_SCALE },
        pageSize: CAMPAIGN_PAGE_SIZE,
        window: CAMPAIGN_BATCH_WINDOW,
        throttlePerMinute: campaign.throttle_per_minute,
      },
    ],
    typedSearchAttributes: [
      { key: CampaignIdKey, value: campaign.id },
      { key: ApplicationIdKey, value: campaign.application_id },
    ],
  });
}

/**
 * Tells the campaign workflow that PostgreSQL changed (execute, cancel, pause, resume). A workflow
 * that has already finished has nothing left to do; other failures are logged, not hidden.
 */
export async function signalCampaignWorkflow(
  deps: Deps,
  campaignId: string,
  signal: typeof executeSignal | typeof cancelSignal | typeof pauseSignal | typeof resumeSignal,
): Promise<void> {
  try {
    await deps.temporal.workflow.getHandle(campaignWorkflowId(campaignId)).signal(signal);
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) return;
    deps.logger.warn({ err: error, campaign_id: campaignId, signal: signal.name }, "could not signal the campaign workflow");
    throw error;
  }
}
