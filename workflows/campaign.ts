import {
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  getExternalWorkflowHandle,
  log,
  ParentClosePolicy,
  patched,
  proxyActivities,
  setHandler,
  startChild,
  workflowInfo,
} from "@temporalio/workflow";
import type { AudiencePage, AudiencePages, createCampaignActivities } from "../activities/campaigns";
import { ApplicationIdKey, CampaignIdKey } from "../temporal/search-attributes";
import type { CampaignDelivery, CampaignStatus } from "../src/campaigns/repository";
import type { DeliveryGroup } from "../src/campaigns/timezones";
export { campaignBatchWorkflow } from "./campaign-batch";
import { batchCancelSignal, batchDoneSignal, batchRetryingSignal, campaignBatchWorkflow, campaignBatchWorkflowId, type BatchDone, type CampaignTiming } from "./campaign-batch";
import { ACTIVITY_RETRY } from "./activity-retry";

const activities = proxyActivities<ReturnType<typeof createCampaignActivities>>({
  startToCloseTimeout: "2 minutes",
  retry: ACTIVITY_RETRY,
});

/** Where a campaign's fan-out stands; carried across continue-as-new. */
export interface CampaignProgress {
  started: boolean;
  /** Last subscription id handed to a batch (keyset cursor; per delivery group). */
  cursor: string | null;
  /** The audience has been fully paged. */
  exhausted: boolean;
  batchesStarted: number;
  /** Batch numbers started and holding a window slot: sending their first round. */
  inFlight: number[];
  /**
   * Batch numbers past their first round with only retries left (waiting on retry timers): not
   * done, so the campaign does not end before them, but holding no window slot. Absent in
   * progress carried over from runs before batches reported it.
   */
  retrying?: number[];
  recipientsPaged: number;
  messages: number;
  successful: number;
  failed: number;
  paused: boolean;
  cancelled: boolean;
  /** Timezone delivery: the groups planned at start, earliest first (absent without it). */
  groups?: DeliveryGroup[];
  /** The group being paged. */
  groupIndex?: number;
}

/** Input of {@link campaignWorkflow}. */
export interface CampaignWorkflowInput {
  campaignId: string;
  applicationId: string;
  /** Epoch ms to start at; null/past = now. */
  scheduledAt: number | null;
  timing: CampaignTiming;
  /** Recipients per batch (≤ 500). */
  pageSize: number;
  /** Batches sending at the same time. */
  window: number;
  throttlePerMinute: number | null;
  /** Timezone delivery (each recipient at local_time in their timezone); null = all at once. */
  delivery?: CampaignDelivery | null;
  /**
   * How often a waiting campaign re-reads its status from PostgreSQL and looks for batches that
   * closed without reporting: a signal the API could not deliver is then caught within this time.
   */
  statusPollMs?: number;
  /**
   * Continue as new after this many batches even if the server has not suggested it yet, so each
   * run's history stays bounded (and tests can exercise the hand-over). Default: only on suggestion.
   */
  batchesPerRun?: number;
  /** Set by continue-as-new. */
  progress?: CampaignProgress;
}

/** Start now instead of at scheduled_at (the API already set the campaign running). */
export const executeSignal = defineSignal("execute");
/** Stop: no new batches, cancel unsent messages (the API already set the campaign cancelled). */
export const cancelSignal = defineSignal("cancel");
/** Start no new batch until resumed (running batches finish). */
export const pauseSignal = defineSignal("pause");
/** Continue starting batches. */
export const resumeSignal = defineSignal("resume");
/** The fan-out's progress. */
export const progressQuery = defineQuery<CampaignProgress>("progress");

/** The single-page answer of workflows started before nextAudiencePages, in the new shape. */
function singlePage(page: AudiencePage): AudiencePages {
  return {
    pages: page.count > 0 && page.last !== null ? [{ count: page.count, last: page.last }] : [],
    limit: page.limit ?? page.count,
    status: page.status,
    waitMs: page.waitMs,
  };
}

/** Workflow id of a campaign: its business id, so it can never run twice. */
export function campaignWorkflowId(campaignId: string): string {
  return `campaign-${campaignId}`;
}

const DEFAULT_STATUS_POLL_MS = 5 * 60_000;

/** Batches waiting to retry looked at per status poll for having closed without reporting. */
const RETRYING_SWEEP = 64;

/**
 * A campaign (SEQ-002 §2.3/§4): waits durably for scheduled_at (or execute/cancel), then pages the
 * audience by keyset on subscription id — per timezone group, each at its own instant, with
 * timezone delivery — and starts one batch child workflow per page, keeping at most `window`
 * batches sending, pacing by throttle_per_minute and the application's ceiling, obeying
 * pause/resume/cancel, and continuing as new when the history grows. PostgreSQL holds the
 * campaign's status: the API writes it first and signals; the workflow re-reads it with every page
 * and while it waits, so an undelivered signal delays a change but never loses it.
 */
export async function campaignWorkflow(input: CampaignWorkflowInput): Promise<CampaignProgress> {
  const { campaignId, applicationId } = input;
  const pollMs = input.statusPollMs ?? DEFAULT_STATUS_POLL_MS;
  const p: CampaignProgress = input.progress ?? {
    started: false,
    cursor: null,
    exhausted: false,
    batchesStarted: 0,
    inFlight: [],
    recipientsPaged: 0,
    messages: 0,
    successful: 0,
    failed: 0,
    paused: false,
    cancelled: false,
  };
  let executeNow = false;
  setHandler(executeSignal, () => void (executeNow = true));
  setHandler(cancelSignal, () => void (p.cancelled = true));
  // Pause and resume signals seen by this run: a status read that a signal overtook is stale.
  let statusSignals = 0;
  setHandler(pauseSignal, () => {
    p.paused = true;
    statusSignals += 1;
  });
  setHandler(resumeSignal, () => {
    p.paused = false;
    statusSignals += 1;
  });
  const batchFinished = (done: BatchDone): void => {
    if (!p.inFlight.includes(done.batchNo) && !p.retrying?.includes(done.batchNo)) return;
    p.inFlight = p.inFlight.filter((n) => n !== done.batchNo);
    if (p.retrying) p.retrying = p.retrying.filter((n) => n !== done.batchNo);
    p.messages += done.messages;
    p.successful += done.successful;
    p.failed += done.failed;
  };
  setHandler(batchDoneSignal, batchFinished);
  setHandler(batchRetryingSignal, (batchNo) => {
    if (!p.inFlight.includes(batchNo)) return;
    p.inFlight = p.inFlight.filter((n) => n !== batchNo);
    p.retrying = [...(p.retrying ?? []), batchNo];
  });
  /** Batches that have not reported done, whether sending or retrying. */
  const unfinished = (): number[] => [...p.inFlight, ...(p.retrying ?? [])];
  setHandler(progressQuery, () => p);
  const handOver = async (): Promise<void> => {
    if (workflowInfo().continueAsNewSuggested) await continueAsNew<typeof campaignWorkflow>({ ...input, progress: p });
  };
  /**
   * Applies the status PostgreSQL holds (the API's truth) to the fan-out. `signalsBefore` is the
   * signal count when the status was read: a pause or resume signalled since is newer than a
   * running/paused read (the API writes the row, then signals) and stands; an end always applies.
   * Histories from before this rule applied every read.
   */
  const applyStatus = (status: CampaignStatus, signalsBefore?: number): void => {
    const overtaken = signalsBefore !== undefined && statusSignals !== signalsBefore && (status === "running" || status === "paused");
    if (overtaken && patched("campaign-status-read-yields-to-signals")) return;
    if (status === "running") p.paused = false;
    else if (status === "paused") p.paused = true;
    // Ended outside this workflow (cancelled by the API, or failed by an operator): stop sending.
    else if (status === "cancelled" || status === "completed" || status === "failed") p.cancelled = true;
  };
  /** Reads the campaign's status and applies it (unless a signal overtook the read). */
  const refreshStatus = async (): Promise<void> => {
    const signalsBefore = statusSignals;
    applyStatus(await activities.campaignStatus(campaignId), signalsBefore);
  };
  /**
   * Waits until `ready`, re-reading the status and freeing the window slots of batches that closed
   * without reporting (failed, terminated; also ones started before a continue-as-new) every poll.
   */
  const waitUntil = async (ready: () => boolean): Promise<void> => {
    while (!(await condition(() => p.cancelled || ready(), pollMs))) {
      await refreshStatus();
      // Every batch in the window, and a slice of those waiting to retry (a provider outage can
      // leave thousands there, each one describe() call): the slice rotates, so each is looked at
      // within a few polls.
      const retryingSlice = (p.retrying ?? []).slice(0, RETRYING_SWEEP);
      if (p.inFlight.length + retryingSlice.length > 0) {
        for (const batchNo of await activities.closedCampaignBatches({ campaignId, applicationId, batchNos: [...p.inFlight, ...retryingSlice] })) {
          log.warn("campaign batch closed without reporting", { batchNo });
          batchFinished({ batchNo, messages: 0, successful: 0, failed: 0 });
        }
        if (p.retrying) p.retrying = [...p.retrying.filter((n) => !retryingSlice.includes(n)), ...p.retrying.filter((n) => retryingSlice.includes(n))];
      }
      await handOver();
    }
  };
  const nextGroup = (): void => {
    p.cursor = null;
    if (!p.groups) {
      p.exhausted = true;
      return;
    }
    p.groupIndex = (p.groupIndex ?? 0) + 1;
    if (p.groupIndex >= p.groups.length) p.exhausted = true;
  };

  if (!p.started) {
    if (input.scheduledAt !== null) {
      const at = input.scheduledAt;
      while (!executeNow && !p.cancelled && Date.now() < at) {
        if (await condition(() => executeNow || p.cancelled, Math.min(at - Date.now(), pollMs))) break;
        const status = await activities.campaignStatus(campaignId);
        // `running` before the time means an execute whose signal was lost; anything but
        // scheduled/draft means it ended (markCampaignRunning below decides).
        if (status !== "scheduled" && status !== "draft") break;
        await handOver();
      }
    }
    if (!p.cancelled) {
      const status = await activities.markCampaignRunning(campaignId);
      // Cancelled before this run started, yet it may have messages: an earlier run was terminated
      // and the API restarted the workflow to clean up (cancel below). Histories from before this
      // step returned here.
      if (status === "cancelled" && patched("campaign-cancelled-before-start-cleans-up")) {
        p.cancelled = true;
      } else {
        // Otherwise ended before it started: nothing was sent, nothing to clean up.
        if (status !== "running" && status !== "paused") return p;
        p.paused = status === "paused";
        if (input.delivery) {
          p.groups = await activities.planDeliveryGroups({ campaignId, fromMs: Date.now() });
          p.groupIndex = 0;
          if (p.groups.length === 0) p.exhausted = true;
        }
      }
    }
    p.started = true;
  }

  let batchesThisRun = 0;
  while (!p.cancelled && !p.exhausted) {
    const group = p.groups?.[p.groupIndex ?? 0];
    if (group && Date.now() < group.sendAt) {
      // This group's local time has not come yet (a cancel cuts the wait short). The status is
      // re-read every poll meanwhile, so a cancel whose signal was lost does not wait up to a day;
      // histories recorded before that waited in one piece.
      if (patched("campaign-group-wait-polls-status")) {
        if (!(await condition(() => p.cancelled, Math.min(group.sendAt - Date.now(), pollMs)))) {
          await refreshStatus();
          await handOver();
        }
      } else {
        await condition(() => p.cancelled, group.sendAt - Date.now());
      }
      continue;
    }
    await waitUntil(() => !p.paused && p.inFlight.length < input.window);
    if (p.cancelled) break;
    const limit = input.throttlePerMinute ? Math.min(input.pageSize, Math.max(1, Math.ceil(input.throttlePerMinute / 6))) : input.pageSize;
    const audienceGroup = group ? { timezones: group.timezones, includesUnset: group.includesUnset } : undefined;
    // Fill the whole free window from one activity and one workflow task: per-batch round trips
    // capped a campaign at ~2,000 messages/s. A throttled campaign still takes one page at a time.
    const fanOut = patched("campaign-fanout-pages");
    // Histories from before the fan-out asked for one page at a time, and their end rule must too.
    const wanted = input.throttlePerMinute || !fanOut ? 1 : input.window - p.inFlight.length;
    const signalsBeforePages = statusSignals;
    const answer = fanOut
      ? await activities.nextAudiencePages({ campaignId, after: p.cursor, limit, pages: wanted, group: audienceGroup })
      : singlePage(await activities.nextAudiencePage({ campaignId, after: p.cursor, limit, group: audienceGroup }));
    if (answer.status !== "running") {
      applyStatus(answer.status, signalsBeforePages);
      continue;
    }
    if (answer.pages.length === 0) {
      nextGroup();
      continue;
    }
    // The application's ceiling, shared by all its campaigns: this page's reserved start.
    if (answer.waitMs > 0 && (await condition(() => p.cancelled, answer.waitMs))) break;
    // Paused while the pages were read or their turn under the ceiling came: start none of them
    // (the cursor has not moved, so they are read again on resume). Histories from before this
    // rule started them.
    if (p.paused && patched("campaign-pause-during-page-read")) continue;
    const parentWorkflowId = workflowInfo().workflowId;
    let after = p.cursor;
    const starts = answer.pages.map((page, i) => {
      const batchNo = p.batchesStarted + i;
      const args = { campaignId, applicationId, batchNo, after, last: page.last, group: audienceGroup, timing: input.timing, parentWorkflowId };
      after = page.last;
      // In flight before its start resolves: a batch that finishes while this workflow is behind
      // (its worker died) reports in the same activation as its start, and signals are applied first.
      p.inFlight.push(batchNo);
      // ABANDON: batches outlive this run (continue-as-new) and even the campaign (their receipt
      // windows and refunds must complete after the campaign has finished sending).
      return startChild(campaignBatchWorkflow, {
        workflowId: campaignBatchWorkflowId(campaignId, batchNo),
        parentClosePolicy: ParentClosePolicy.ABANDON,
        typedSearchAttributes: [
          { key: CampaignIdKey, value: campaignId },
          { key: ApplicationIdKey, value: applicationId },
        ],
        args: [args],
      }).then((child) => {
        // A batch that fails or is terminated never signals: abort it (its unsent messages fail
        // with batch_aborted and are refunded; nothing else would ever end them) and free its
        // window slot so the campaign can finish. Observable within this run; after a
        // continue-as-new, waitUntil's poll finds such batches and aborts them the same way.
        child.result().then(
          () => undefined,
          async (error: unknown) => {
            log.warn("campaign batch did not complete", { batchNo, error: String(error) });
            // Histories from before this step freed the slot only; they replay without it.
            if (patched("campaign-failed-batch-abort")) {
              try {
                await activities.closedCampaignBatches({ campaignId, applicationId, batchNos: [batchNo] });
              } catch (abortError) {
                // Retries exhausted: still free the slot rather than hold the campaign open for good.
                log.error("campaign batch abort failed", { batchNo, error: String(abortError) });
              }
            }
            batchFinished({ batchNo, messages: 0, successful: 0, failed: 0 });
          },
        );
      });
    });
    await Promise.all(starts);
    const paged = answer.pages.reduce((n, page) => n + page.count, 0);
    p.batchesStarted += answer.pages.length;
    batchesThisRun += answer.pages.length;
    p.recipientsPaged += paged;
    p.cursor = answer.pages.at(-1)!.last;
    // The activity knows whether the audience ended: under an application ceiling it answers one
    // page of the many asked for, which the page count alone took for the end. Histories from
    // before (and answers without `ended`) keep the page-count rule.
    const ended = patched("campaign-audience-end-from-activity") && answer.ended !== undefined ? answer.ended : answer.pages.length < wanted || answer.pages.at(-1)!.count < answer.limit;
    if (ended) nextGroup();
    if (input.throttlePerMinute) await condition(() => p.cancelled, Math.ceil((paged * 60_000) / input.throttlePerMinute));
    const runFull = input.batchesPerRun !== undefined && batchesThisRun >= input.batchesPerRun;
    // The cursor, counters and in-flight batch numbers carry over; batches signal by workflow id,
    // so their batchDone reaches whichever run is current.
    if (!p.exhausted && (workflowInfo().continueAsNewSuggested || runFull)) await continueAsNew<typeof campaignWorkflow>({ ...input, progress: p });
  }

  if (!p.cancelled) await waitUntil(() => unfinished().length === 0);
  if (p.cancelled) {
    await activities.cancelCampaignMessages(campaignId);
    for (const batchNo of unfinished()) {
      try {
        await getExternalWorkflowHandle(campaignBatchWorkflowId(campaignId, batchNo)).signal(batchCancelSignal);
      } catch (error) {
        // The batch already finished; its messages were cancelled or decided above.
        log.info("batch not reachable for cancel", { batchNo, error: String(error) });
      }
    }
    await activities.finishCampaign(campaignId, "cancelled");
    return p;
  }
  await activities.finishCampaign(campaignId, "completed");
  return p;
}
