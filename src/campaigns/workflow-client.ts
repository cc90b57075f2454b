import { WorkflowExecutionAlreadyStartedError, WorkflowIdConflictPolicy, WorkflowIdReusePolicy, WorkflowNotFoundError } from "@temporalio/client";
import type { Deps } from "../deps";
import { campaignWorkflow, campaignWorkflowId, type CampaignWorkflowInput, cancelSignal, type executeSignal, type pauseSignal, type resumeSignal } from "../../workflows/campaign";
import { ApplicationIdKey, CampaignIdKey } from "../../temporal/search-attributes";
import { WAITING_CAMPAIGN_STATUSES, type CampaignRow } from "./repository";
import type { Config } from "../config";
import { ensureCampaignSchedule } from "./schedules";
import { withinApiDeadline } from "../http/temporal-deadline";

/** Recipients per batch (SEQ-002 §4.1: chunks of 500). */
export const CAMPAIGN_PAGE_SIZE = 500;

/** The campaign columns its workflow input is made of. */
export type StartableCampaign = Pick<CampaignRow, "id" | "application_id" | "status" | "scheduled_at" | "throttle_per_minute" | "delivery" | "schedule">;

/**
 * Starts what drives a campaign: the Temporal Schedule of a recurring campaign (its runs start
 * campaign workflows), or the campaign workflow itself. Idempotent.
 */
export async function startCampaign(deps: Deps, campaign: StartableCampaign): Promise<void> {
  if (campaign.schedule) await ensureCampaignSchedule(deps, campaign);
  else await startCampaignWorkflow(deps, campaign);
}

/** The campaign workflow's input; timings are read from config once, here, never in the workflow. */
export function campaignWorkflowInput(config: Config, campaign: StartableCampaign): CampaignWorkflowInput {
  return {
    campaignId: campaign.id,
    applicationId: campaign.application_id,
    // Only a campaign still waiting for its time waits: one executed early whose workflow starts
    // late (Temporal was down, the reconciler starts it) goes at once.
    scheduledAt: campaign.scheduled_at && WAITING_CAMPAIGN_STATUSES.includes(campaign.status) ? new Date(campaign.scheduled_at).getTime() : null,
    timing: { receiptTimeoutMs: config.AUTOMATA_RECEIPT_TIMEOUT, retryScale: config.AUTOMATA_RETRY_SCALE, pendingTimeoutMs: config.AUTOMATA_PENDING_TIMEOUT },
    pageSize: CAMPAIGN_PAGE_SIZE,
    window: config.AUTOMATA_CAMPAIGN_WINDOW,
    throttlePerMinute: campaign.throttle_per_minute,
    delivery: campaign.delivery,
    statusPollMs: config.AUTOMATA_CAMPAIGN_STATUS_POLL,
  };
}

/**
 * Starts (or finds) a campaign's workflow; the id is the campaign's business id with USE_EXISTING,
 * so an Idempotency-Key replay or a retried request never starts a second one, and a closed one is
 * never run again (an operator's terminate stands; the reconciler fails such a campaign).
 */
export async function startCampaignWorkflow(deps: Deps, campaign: StartableCampaign): Promise<void> {
  try {
    await start(deps, campaign);
  } catch (error) {
    // Already ran to completion (a replay of a finished campaign): nothing to start.
    if (error instanceof WorkflowExecutionAlreadyStartedError) return;
    throw error;
  }
}

/** How every start of a campaign's workflow is made (its business id, queue, reuse policy, search attributes). */
function campaignStartOptions(deps: Deps, campaign: StartableCampaign) {
  return {
    workflowId: campaignWorkflowId(campaign.id),
    taskQueue: deps.config.TEMPORAL_TASK_QUEUE,
    workflowIdReusePolicy: WorkflowIdReusePolicy.REJECT_DUPLICATE,
    args: [campaignWorkflowInput(deps.config, campaign)] as [CampaignWorkflowInput],
    typedSearchAttributes: [
      { key: CampaignIdKey, value: campaign.id },
      { key: ApplicationIdKey, value: campaign.application_id },
    ],
  };
}

async function start(deps: Deps, campaign: StartableCampaign): Promise<void> {
  await deps.temporal.workflow.start(campaignWorkflow, { ...campaignStartOptions(deps, campaign), workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING });
}

/**
 * Tells the campaign workflow that PostgreSQL changed (execute, cancel, pause, resume), so it acts
 * at once. Best effort: the workflow re-reads the status with every page and every
 * AUTOMATA_CAMPAIGN_STATUS_POLL while it waits, so a signal Temporal could not take (it was down)
 * delays the change but never loses it; the API's answer already reflects PostgreSQL.
 */
export async function signalCampaignWorkflow(
  deps: Deps,
  campaignId: string,
  signal: typeof executeSignal | typeof cancelSignal | typeof pauseSignal | typeof resumeSignal,
): Promise<"signalled" | "no_workflow" | "unreachable"> {
  try {
    await withinApiDeadline(deps, () => deps.temporal.workflow.getHandle(campaignWorkflowId(campaignId)).signal(signal));
    return "signalled";
  } catch (error) {
    // Finished already (or never started): nothing is listening.
    if (error instanceof WorkflowNotFoundError) return "no_workflow";
    deps.logger.warn({ err: error, campaign_id: campaignId, signal: signal.name }, "could not signal the campaign workflow; it will read the change from PostgreSQL");
    return "unreachable";
  }
}

/**
 * A cancel that found no campaign workflow listening: its workflow never started, finished, or
 * was terminated by an operator with batches' messages still unsent. A new run is started with the
 * cancel already delivered; it cancels what is unsent, refunds the batches that closed without
 * settling, and ends. A workflow that completed normally is not run again (the reuse policy
 * refuses, which is fine: it left nothing behind).
 */
export async function cancelCampaignWithoutWorkflow(deps: Deps, campaign: StartableCampaign): Promise<void> {
  try {
    await withinApiDeadline(deps, () =>
      deps.temporal.workflow.signalWithStart(campaignWorkflow, {
        ...campaignStartOptions(deps, campaign),
        // The one start that may follow a closed run: a terminated one left messages to clean up.
        workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        signal: cancelSignal,
        signalArgs: [],
      }),
    );
  } catch (error) {
    if (error instanceof WorkflowExecutionAlreadyStartedError) return;
    deps.logger.warn({ err: error, campaign_id: campaign.id }, "could not start the campaign workflow to clean up after a cancel");
  }
}

/** Cancels a campaign's workflow: the signal, or when nothing is listening a cleanup run ({@link cancelCampaignWithoutWorkflow}). */
export async function cancelCampaignWorkflow(deps: Deps, campaign: StartableCampaign): Promise<void> {
  if ((await signalCampaignWorkflow(deps, campaign.id, cancelSignal)) === "no_workflow") await cancelCampaignWithoutWorkflow(deps, campaign);
}
