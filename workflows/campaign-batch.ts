import { condition, defineSignal, getExternalWorkflowHandle, log, patched, proxyActivities, setHandler, sleep, type ExternalWorkflowHandle } from "@temporalio/workflow";
import type { BatchSendResult, BatchStart, createCampaignActivities } from "../activities/campaigns";
import type { BatchRange } from "../src/campaigns/repository";
import { nextRetryDelay, RETRY_AFTER_FLOOR_PATCH, RETRY_JITTER_PATCH, RETRY_SCHEDULES, type RetryClass } from "../src/messages/retry-policy";
import { FAILURE_CODES } from "../src/messages/failure-codes";
import { ACTIVITY_RETRY } from "./activity-retry";

// Regular (not local) activities: a batch send of 500 pushes can outlast a workflow task, and it
// heartbeats, so a worker that dies mid-send is noticed within the heartbeat timeout and the retried
// activity resumes with the messages still pending.
const activities = proxyActivities<ReturnType<typeof createCampaignActivities>>({
  startToCloseTimeout: "10 minutes",
  heartbeatTimeout: "20 seconds",
  retry: ACTIVITY_RETRY,
});

/** Durations a batch runs with; fixed when the campaign started so replays never read config. */
export interface CampaignTiming {
  receiptTimeoutMs: number;
  retryScale: number;
  /** Messages still unsent this long after their batch created them fail with `pending_timeout`. */
  pendingTimeoutMs: number;
}

/** Input of {@link campaignBatchWorkflow}. */
export interface CampaignBatchInput extends BatchRange {
  timing: CampaignTiming;
  /** Workflow id of the campaign, told when this batch has finished sending. */
  parentWorkflowId: string;
}

/** What a batch reports to its campaign when it has finished sending (before the receipt wait). */
export interface BatchDone {
  batchNo: number;
  messages: number;
  successful: number;
  failed: number;
}

/** Sent by a batch to its campaign workflow when the batch has nothing more to send. */
export const batchDoneSignal = defineSignal<[BatchDone]>("batchDone");
/**
 * Sent by a batch to its campaign workflow when its first round is over and only temporarily
 * failed messages are left, waiting on a retry timer: the campaign gives its window slot to the
 * next page instead of keeping it for the whole retry schedule (15 min per outage retry).
 */
export const batchRetryingSignal = defineSignal<[number]>("batchRetrying");
/**
 * The campaign workflow's own pause signal (campaign.ts's `pauseSignal`, by name: that module
 * imports this one), sent when a provider refused the application's credentials.
 */
const campaignPauseSignal = defineSignal("pause");
/** patched() id of the pause on a credential refusal: batches from before it sent on. */
export const CREDENTIAL_REFUSAL_PAUSE_PATCH = "campaign-batch-pauses-on-credential-refusal";
/** patched() id of {@link batchRetryingSignal}: batches from before it kept their slot until done. */
export const BATCH_RETRY_FREES_SLOT_PATCH = "campaign-batch-retry-frees-slot";
/** Sent by the campaign to its running batches on cancel: wake up from retry timers now. */
export const batchCancelSignal = defineSignal("cancel");

/** The create and debit steps as separate activities (histories from before startCampaignBatch). */
async function startInSteps(range: BatchRange): Promise<BatchStart> {
  const { messages } = await activities.createCampaignBatch(range);
  const proceed = messages > 0 && (await activities.debitCampaignBatch(range)).proceed;
  return { messages, proceed, round: null, settled: null };
}

/** Signals the batch's campaign; one that already finished (cancelled) is waiting for nothing. */
async function tellCampaign(parentWorkflowId: string, batchNo: number, signal: (campaign: ExternalWorkflowHandle) => Promise<void>): Promise<void> {
  try {
    await signal(getExternalWorkflowHandle(parentWorkflowId));
  } catch (error) {
    log.info("campaign workflow not reachable", { batchNo, error: String(error) });
  }
}

/** Workflow id of a campaign batch. */
export function campaignBatchWorkflowId(campaignId: string, batchNo: number): string {
  return `campaign-${campaignId}-batch-${batchNo}`;
}

/**
 * One page (≤ 500 recipients) of a campaign: create its messages in bulk, debit the quota once,
 * send through the providers' batch APIs, retry the temporarily failed subset on durable timers per
 * failure class, refund what was never accepted, tell the campaign, then wait once for the
 * receipt window and expire the messages that got no receipt.
 */
export async function campaignBatchWorkflow(input: CampaignBatchInput): Promise<BatchDone> {
  const { timing, parentWorkflowId, ...range } = input;
  let cancelled = false;
  setHandler(batchCancelSignal, () => void (cancelled = true));

  const done: BatchDone = { batchNo: range.batchNo, messages: 0, successful: 0, failed: 0 };
  const createdAt = Date.now();
  // One activity for create, debit, first send and (nothing to retry) settle; batches started
  // before it existed replay their separate create and debit activities.
  const start: BatchStart = patched("campaign-batch-start")
    ? await activities.startCampaignBatch(range)
    : await startInSteps(range);
  done.messages = start.messages;
  // A provider refused the application's credentials: every later push would fail alike, so the
  // campaign pauses (once; resuming it after the fix sends the rest).
  let pausedForCredentials = false;
  const pauseIfCredentialsRefused = async (round: BatchSendResult | null): Promise<void> => {
    if (pausedForCredentials || !round?.credentialRefusal || !patched(CREDENTIAL_REFUSAL_PAUSE_PATCH)) return;
    pausedForCredentials = true;
    if (await activities.pauseCampaignForCredentials(range.campaignId, round.credentialRefusal)) {
      await tellCampaign(parentWorkflowId, range.batchNo, (campaign) => campaign.signal(campaignPauseSignal));
    }
  };
  await pauseIfCredentialsRefused(start.round);
  if (start.proceed) {
    let settled = start.settled;
    let round = start.round;
    const retries: Record<RetryClass, number> = { network: 0, provider_outage: 0, rate_limited: 0 };
    let slotFreed = false;
    while (!settled) {
      if (round === null) {
        round = await activities.sendCampaignBatch(range);
        await pauseIfCredentialsRefused(round);
      }
      // A round recorded before the send step named a missing class `network` (a user's erasure had
      // wiped it) reports it as "null": retried as network, as the step now does, instead of a
      // TypeError on every replay of that stuck task. Rounds with known classes are unchanged.
      const classes = [...new Set((Object.keys(round.errored) as string[]).filter((c) => (round!.errored[c as RetryClass] ?? 0) > 0).map((c) => (c in RETRY_SCHEDULES ? (c as RetryClass) : "network")))];
      if (classes.length === 0) break;
      let delay = 0;
      const exhausted: RetryClass[] = [];
      // One draw per round (the workflow's seeded Math.random()): a campaign's batches that hit the
      // same 429 wake spread out instead of all at once.
      const jitter = patched(RETRY_JITTER_PATCH) ? Math.random() : 0;
      const legacyRetryAfter = !patched(RETRY_AFTER_FLOOR_PATCH);
      const askedWait: Partial<Record<RetryClass, number>> = { rate_limited: round.retryAfterMs, provider_outage: round.outageRetryAfterMs };
      for (const retryClass of classes) {
        retries[retryClass] += 1;
        const next = nextRetryDelay(retryClass, retries[retryClass], timing.retryScale, askedWait[retryClass], jitter, legacyRetryAfter);
        if (next === undefined) exhausted.push(retryClass);
        else delay = Math.max(delay, next);
      }
      if (exhausted.length > 0) await activities.failErroredCampaignBatch(range, exhausted);
      if (exhausted.length === classes.length) break;
      // Same rule as a single message: a retry that would land after the pending timeout is not
      // attempted (older timing inputs have no pending timeout).
      const pendingTimeoutMs = timing.pendingTimeoutMs ?? Number.POSITIVE_INFINITY;
      if (Date.now() - createdAt + delay > pendingTimeoutMs) {
        await activities.failErroredCampaignBatch(range, classes.filter((c) => !exhausted.includes(c)), FAILURE_CODES.pendingTimeout);
        break;
      }
      if (!slotFreed && patched(BATCH_RETRY_FREES_SLOT_PATCH)) {
        slotFreed = true;
        await tellCampaign(parentWorkflowId, range.batchNo, (campaign) => campaign.signal(batchRetryingSignal, range.batchNo));
      }
      // One timer for the whole still-errored subset; a campaign cancel cuts it short.
      await condition(() => cancelled, delay);
      await activities.retryCampaignBatch(range);
      round = null;
    }
    // The database's counts, not the rounds' sums: a round retried after a worker died mid-way
    // only sees what was still pending.
    settled ??= await activities.settleCampaignBatch(range);
    done.successful = settled.sent;
    done.failed = settled.failed;
  } else if (start.settled) {
    // Cancelled or out of quota after an earlier attempt sent part of the batch: those messages
    // still get their receipt wait below.
    done.successful = start.settled.sent;
    done.failed = start.settled.failed;
  }
  await tellCampaign(parentWorkflowId, range.batchNo, (campaign) => campaign.signal(batchDoneSignal, done));
  // Someone was sent something: wait for receipts, then expire what got none.
  if (done.successful > 0) {
    await sleep(timing.receiptTimeoutMs);
    await activities.expireCampaignBatchReceipts(range);
  }
  return done;
}
