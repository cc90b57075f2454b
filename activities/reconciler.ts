import type { Knex } from "knex";
import type { Deps } from "../src/deps";
import pLimit from "p-limit";
import { startMessageWorkflows, type StartableMessage } from "../src/messages/workflow-client";
import { messageWorkflowId } from "../workflows/message";
import { WorkflowNotFoundError, type WorkflowExecutionStatusName } from "@temporalio/client";
import { startCampaign, type StartableCampaign } from "../src/campaigns/workflow-client";
import { campaignWorkflowId } from "../workflows/campaign";
import { completeEndedRecurringCampaign, deleteLeftoverCampaignSchedules, refusedScheduleReason, type LeftoverScheduleSweep } from "../src/campaigns/schedules";
import { ACTIVE_CAMPAIGN_STATUSES, batchesWithUnsentMessages } from "../src/campaigns/repository";
import { createCampaignActivities } from "./campaigns";
import { createMessageActivities } from "./messages";
import type { MessageStatus } from "../src/messages/state-machine";
import { startErasureWorkflow } from "../src/users/erasure";
import { userErasureWorkflowId } from "../workflows/user-erasure";
import { FAILURE_CODES, RECEIPT_TIMEOUT_MESSAGE } from "../src/messages/failure-codes";
import { transitionMessagesWhere } from "../src/campaigns/bulk";

/** A campaign the reconciler looks at: what starting it needs, and whether it is a recurring campaign's run. */
type ReconciledCampaign = StartableCampaign & { parent_campaign_id: string | null };

/**
 * How a message or campaign workflow can close without writing its end to PostgreSQL: an operator
 * terminated or cancelled it in the Temporal UI, or it failed (its row deleted under it) or timed out.
 */
const ABANDONED_CLOSES: ReadonlySet<WorkflowExecutionStatusName> = new Set(["FAILED", "CANCELLED", "TERMINATED", "TIMED_OUT"]);

/**
 * A message workflow writes its end before it completes, so a COMPLETED one over a still unsent
 * row also left it behind: an earlier release ended the workflow when a re-run of its first task
 * found the row already errored.
 */
const MESSAGE_ABANDONED_CLOSES: ReadonlySet<WorkflowExecutionStatusName> = new Set([...ABANDONED_CLOSES, "COMPLETED"]);

/** What one look at a campaign did. */
type CampaignReconciliation = "started" | "failed" | "unchanged";

/** Messages one reconciler pass looks at, or starts, at once (each a Temporal call, some a database write). */
const RECONCILER_CONCURRENCY = 8;

/**
 * How long a pass keeps taking further pages while a rotation has more behind them, when its input
 * names no budget. Under the reconciler activity's 5-minute timeout, with room for the steps after it.
 */
export const RECONCILER_PASS_BUDGET_MS = 90_000;

/** Activities of the reconciler workflow. */
export function createReconcilerActivities(deps: Deps) {
  const campaignActivities = createCampaignActivities(deps);
  const messageActivities = createMessageActivities(deps);

  /**
   * Starts a campaign's missing workflow or ensures a recurring campaign's schedule; fails a
   * campaign whose workflow closed abandoned ({@link failAbandonedCampaign}) or whose schedule
   * Temporal refuses.
   */
  async function reconcileCampaign(campaign: ReconciledCampaign): Promise<CampaignReconciliation> {
    if (!campaign.schedule) {
      try {
        const { status } = await deps.temporal.workflow.getHandle(campaignWorkflowId(campaign.id)).describe();
        if (!ABANDONED_CLOSES.has(status.name)) return "unchanged";
        return (await failAbandonedCampaign(campaign, status.name)) ? "failed" : "unchanged";
      } catch (error) {
        if (!(error instanceof WorkflowNotFoundError)) throw error;
      }
    }
    try {
      await startCampaign(deps, campaign);
    } catch (error) {
      // Accepted while Temporal was too slow to judge its spec (the API's deadline passed), or
      // written before the API checked it: asking again every pass never helps.
      const refusal = campaign.schedule ? refusedScheduleReason(error) : null;
      if (refusal === null) throw error;
      return (await failCampaign(campaign, `Temporal refused the campaign's schedule: ${refusal}`)) ? "failed" : "unchanged";
    }
    if (campaign.schedule) return "unchanged";
    deps.logger.warn({ campaign_id: campaign.id }, "reconciler started the workflow of an orphaned campaign");
    return "started";
  }

  /**
   * A campaign whose workflow closed abandoned would otherwise show in progress for ever: nothing
   * is left to page the rest of its audience or to end it. Batches that closed with it get their
   * unsent messages failed (batch_aborted) and refunded, exactly as the campaign workflow does for
   * a batch that dies under it; while any batch is still sending, the campaign waits for a later
   * pass. Then it becomes `failed` with completed_at and an error_message saying why. Starting it
   * again instead would undo an operator's terminate. Answers whether this pass failed it.
   */
  async function failAbandonedCampaign(campaign: ReconciledCampaign, closedAs: WorkflowExecutionStatusName): Promise<boolean> {
    const ids = { campaignId: campaign.id, applicationId: campaign.application_id };
    const batchNos = await batchesWithUnsentMessages(deps.db, ids);
    const closed = await campaignActivities.closedCampaignBatches({ ...ids, batchNos });
    // A batch still sending may yet fail or be terminated, and only an active campaign is looked
    // at again: the campaign is failed on a later pass, once none of its batches is sending.
    if (closed.length < batchNos.length) return false;
    return failCampaign(campaign, `the campaign workflow closed as ${closedAs} before the campaign ended`);
  }

  /**
   * Ends a still-active campaign as `failed` with completed_at and the reason in error_message (GET
   * /campaigns/:id shows it); a recurring campaign's run also lets its parent complete if that was
   * its last. Answers whether this call changed it.
   */
  async function failCampaign(campaign: ReconciledCampaign, reason: string): Promise<boolean> {
    const changed = await deps
      .db("message_campaigns")
      .where("id", campaign.id)
      .whereIn("status", ACTIVE_CAMPAIGN_STATUSES)
      .update({ status: "failed", completed_at: deps.db.fn.now(), error_message: reason });
    if (changed === 0) return false;
    deps.logger.error({ campaign_id: campaign.id, reason }, "reconciler failed a campaign");
    if (campaign.parent_campaign_id !== null) await completeEndedRecurringCampaign(deps, campaign.parent_campaign_id);
    return true;
  }

  /**
   * The next `limit` individually sent messages in `status` created before `cutoff`, oldest first,
   * after the position the previous pass stored (reconciler_cursors). `advance` stores the page's
   * last message as the new position, or clears it when the page reached the end (the next pass
   * starts over at the oldest); the caller calls it once the pass is through, and not when the pass
   * fails, so the next one reads the same page again.
   */
  async function nextPage(status: MessageStatus, cutoff: Date, options: { limit: number; applicationId?: string }): Promise<{ messages: StartableMessage[]; more: boolean; advance(): Promise<void> }> {
    const { db } = deps;
    const cursorName = `messages:${status}:${options.applicationId ?? "all"}`;
    // created_at as text: a JavaScript Date drops its microseconds, and the last row would come back.
    const cursor = (await db("reconciler_cursors").where("name", cursorName).first(db.raw("after_created_at::text AS after_created_at"), "after_id")) as
      | { after_created_at: string; after_id: string }
      | undefined;
    const query = db("messages").where("status", status).whereNull("campaign_id").where("created_at", "<", cutoff);
    if (options.applicationId) query.where("application_id", options.applicationId);
    // Values, not a subquery: PostgreSQL then sees how much lies after the position and walks
    // messages_unsettled_single_idx in order up to the limit instead of sorting all of it.
    if (cursor) query.whereRaw("(created_at, id) > (?::timestamptz, ?::uuid)", [cursor.after_created_at, cursor.after_id]);
    // One more than a page: whether anything lies beyond it, so the end is known in this pass.
    const rows = (await query
      .orderBy([{ column: "created_at" }, { column: "id" }])
      .limit(options.limit + 1)
      .select("id", "application_id", "subscription_id", "created_at", db.raw("created_at::text AS position_at"))) as Array<StartableMessage & { position_at: string }>;
    const page = rows.slice(0, options.limit);
    const last = page[page.length - 1];
    const more = rows.length > options.limit && last !== undefined;
    const advance = async () => {
      if (!more) {
        await db("reconciler_cursors").where("name", cursorName).delete();
        return;
      }
      await db("reconciler_cursors")
        .insert({ name: cursorName, after_created_at: db.raw("?::timestamptz", [last!.position_at]), after_id: last!.id })
        .onConflict("name")
        .merge({ after_created_at: db.raw("excluded.after_created_at"), after_id: db.raw("excluded.after_id"), updated_at: db.fn.now() });
    };
    return { messages: page.map(({ position_at: _position, ...message }) => message), more, advance };
  }

  /**
   * Looks at candidates a few at a time: starts the workflow of each that has none, fails each
   * whose workflow closed without deciding it. A message that throws is logged and counted, and
   * the first error is handed back for the caller to judge.
   */
  async function reconcileMessages(candidates: readonly StartableMessage[], inTurn: ReturnType<typeof pLimit>): Promise<{ checked: number; started: number; failed: number; errors: number; firstError: unknown }> {
    let started = 0;
    let failed = 0;
    let errors = 0;
    let firstError: unknown;
    const handle = async (message: StartableMessage, step: () => Promise<void>) => {
      try {
        await step();
      } catch (error) {
        errors += 1;
        firstError ??= error;
        deps.logger.error({ err: error, message_id: message.id, application_id: message.application_id }, "reconciler could not handle a message; the next rotation looks at it again");
      }
    };
    const orphaned: StartableMessage[] = [];
    await Promise.all(
      candidates.map((message) =>
        inTurn(() =>
          handle(message, async () => {
            let closedAs: WorkflowExecutionStatusName;
            try {
              closedAs = (await deps.temporal.workflow.getHandle(messageWorkflowId(message.id)).describe()).status.name;
            } catch (error) {
              if (!(error instanceof WorkflowNotFoundError)) throw error;
              orphaned.push(message);
              return;
            }
            if (!MESSAGE_ABANDONED_CLOSES.has(closedAs)) return;
            if ((await messageActivities.failMessage(message.id, FAILURE_CODES.workflowClosed, `the message workflow closed as ${closedAs} before the message was sent`)) === "failed") {
              failed += 1;
              deps.logger.error({ message_id: message.id, application_id: message.application_id, workflow_status: closedAs }, "reconciler failed a message whose workflow closed before sending it");
            }
          }),
        ),
      ),
    );
    await Promise.all(
      orphaned.map((message) =>
        inTurn(() =>
          handle(message, async () => {
            await startMessageWorkflows(deps, [message]);
            started += 1;
          }),
        ),
      ),
    );
    return { checked: candidates.length, started, failed, errors, firstError };
  }

  /**
   * Whether an erasure's workflow ended without completing (terminated, failed, cancelled, timed
   * out) or is gone: its request, still `running`, then has nobody to finish it.
   */
  async function erasureWorkflowEndedUnfinished(requestId: string): Promise<boolean> {
    try {
      const status = (await deps.temporal.workflow.getHandle(userErasureWorkflowId(requestId)).describe()).status.name;
      return !["RUNNING", "COMPLETED", "CONTINUED_AS_NEW"].includes(status);
    } catch (error) {
      if (error instanceof WorkflowNotFoundError) return true;
      throw error;
    }
  }

  return {
    /**
     * Looks at individually sent messages still pending/errored after `olderThanMs` and starts the
     * workflow of each one that has none. One whose workflow closed without deciding it (an
     * operator terminated it in the Temporal UI; it failed or timed out) would stay pending for
     * ever: it fails with `workflow_closed` and its quota comes back. Campaign messages are owned
     * by their batch workflows. `applicationId` limits the pass to one application's messages.
     *
     * A pass reads pages of up to `limit` pending and `limit` errored messages, each status going
     * on from where the previous page stopped ({@link nextPage}): a backlog of messages with a
     * live workflow (a burst Temporal is still working through, a provider outage's retries) only
     * makes the rotation longer, it never hides a new orphan behind the same oldest rows. It takes
     * further pages of a status while its last page found work (started or failed something), has
     * more behind it, and `budgetMs` has not run out (0: one page), so the thousands of messages
     * the API accepted during a Temporal outage are started within a pass or two of Temporal's
     * return, not `limit` per interval.
     *
     * A message that cannot be handled is logged, counted in `errors` and looked at again on the
     * next rotation, so one that always throws cannot hold the rotation (and the campaign pass
     * after it) for ever. When every message of the first pages throws, Temporal or PostgreSQL is
     * down: the pass fails and keeps its position, so nothing is skipped while it is. A later page
     * that fails whole ends the pass with what it did, and keeps that page's position.
     */
    async restartOrphanedMessages(options: { olderThanMs: number; limit: number; applicationId?: string; budgetMs?: number }): Promise<{ checked: number; started: number; failed: number; errors: number }> {
      const cutoff = new Date(Date.now() - options.olderThanMs);
      const budgetMs = options.budgetMs ?? RECONCILER_PASS_BUDGET_MS;
      const passStarted = Date.now();
      const total = { checked: 0, started: 0, failed: 0, errors: 0 };
      // A few at a time, not one by one: after a Temporal outage a pass has many pages of messages
      // to look at, and sequential describes made the pass itself the bottleneck.
      const inTurn = pLimit(RECONCILER_CONCURRENCY);
      const add = (result: typeof total) => {
        total.checked += result.checked;
        total.started += result.started;
        total.failed += result.failed;
        total.errors += result.errors;
      };
      // Every pass takes the first page of each status. Further pages of a status only while its
      // last page had more behind it and found work (orphans started, abandoned messages failed):
      // the messages accepted during a Temporal outage lie together, so they are drained now, while
      // a backlog of live workflows (a burst Temporal is working through, a provider outage's
      // retries) is not described again and again within one pass; the rotation across passes
      // covers it as before.
      let statuses: MessageStatus[] = ["pending", "errored"];
      for (let firstPages = true; statuses.length > 0 && (firstPages || Date.now() - passStarted < budgetMs); firstPages = false) {
        const pages = await Promise.all(statuses.map(async (status) => ({ status, ...(await nextPage(status, cutoff, options)) })));
        const results = await Promise.all(pages.map((page) => reconcileMessages(page.messages, inTurn)));
        const checked = results.reduce((n, r) => n + r.checked, 0);
        const failedWhole = (i: number) => results[i]!.checked > 0 && results[i]!.errors === results[i]!.checked;
        // Every message of the first pages failing means Temporal or PostgreSQL is down: the pass
        // fails and keeps its position. A later page that fails whole ends the pass with what it did.
        if (firstPages && checked > 0 && results.reduce((n, r) => n + r.errors, 0) === checked) throw results.find((r) => r.firstError !== undefined)!.firstError;
        results.forEach(add);
        const handled = pages.filter((_, i) => firstPages || !failedWhole(i));
        for (const page of handled) await page.advance();
        statuses = pages.filter((page, i) => handled.includes(page) && page.more && results[i]!.started + results[i]!.failed > 0).map((page) => page.status);
      }
      if (total.started > 0) deps.logger.warn({ count: total.started }, "reconciler started workflows for orphaned messages");
      return total;
    },

    /**
     * Active campaigns (scheduled, running, paused) older than `olderThanMs` whose driver is missing
     * — the API wrote the row but Temporal was unreachable, and no Idempotency-Key replay came —
     * get it started: the campaign workflow, or the Temporal Schedule of a recurring campaign
     * (both idempotent). A campaign whose workflow closed without ending it (terminated in the
     * Temporal UI, failed, timed out) is failed, not restarted, and so is a recurring campaign
     * whose schedule Temporal refuses (`abandoned` counts both). A recurring campaign
     * whose schedule will never fire again, with no run active, is completed.
     *
     * Recurring campaigns stay active for as long as they fire, so a pass takes the `limit`
     * campaigns least recently looked at (never looked at first) and stamps them: an ever-growing
     * set of long-lived campaigns only makes the rotation longer, it never hides a new orphan
     * behind the same oldest rows. One campaign that cannot be handled is logged and skipped, and
     * rows locked by a campaign's activities are skipped, so neither stalls the pass.
     */
    async restartOrphanedCampaigns(options: { olderThanMs: number; limit: number; applicationId?: string }): Promise<{ checked: number; started: number; completed: number; abandoned: number; failed: number }> {
      const { db } = deps;
      const candidates = (await db("message_campaigns")
        .whereIn(
          "id",
          db("message_campaigns")
            .select("id")
            .whereIn("status", ["scheduled", "running", "paused"])
            .modify((q) => (options.applicationId ? q.where("application_id", options.applicationId) : q))
            .where("created_at", "<", new Date(Date.now() - options.olderThanMs))
            .orderByRaw("reconciled_at ASC NULLS FIRST, created_at ASC")
            .limit(options.limit)
            // NO KEY UPDATE: message writers key-share campaign rows (their counts' foreign keys).
            .forNoKeyUpdate()
            .skipLocked(),
        )
        .update({ reconciled_at: db.fn.now() }, ["id", "application_id", "status", "scheduled_at", "throttle_per_minute", "delivery", "schedule", "parent_campaign_id"])) as ReconciledCampaign[];
      let started = 0;
      let completed = 0;
      let abandoned = 0;
      let failed = 0;
      for (const campaign of candidates) {
        try {
          const outcome = await reconcileCampaign(campaign);
          if (outcome === "started") started += 1;
          if (outcome === "failed") abandoned += 1;
          if (campaign.schedule && campaign.parent_campaign_id === null && (await completeEndedRecurringCampaign(deps, campaign.id))) {
            completed += 1;
            deps.logger.info({ campaign_id: campaign.id }, "reconciler completed a recurring campaign whose schedule has no fire left");
          }
        } catch (error) {
          failed += 1;
          deps.logger.error({ err: error, campaign_id: campaign.id }, "reconciler could not check the campaign; a later pass looks at it again");
        }
      }
      return { checked: candidates.length, started, completed, abandoned, failed };
    },

    /** Deletes the schedules of ended (or deleted) campaigns that their end could not delete. */
    async deleteLeftoverCampaignSchedules(options: { limit: number; applicationId?: string }): Promise<LeftoverScheduleSweep> {
      return deleteLeftoverCampaignSchedules(deps, options);
    },

    /**
     * Fails with `receipt_timeout` the sent messages (`successful`, single or campaign) whose
     * receipt window (AUTOMATA_RECEIPT_TIMEOUT after `sent_at`) ended more than `olderThanMs` ago
     * (SEQ-003 §10: no receipt in 72 h is a failure). Mostly their workflow had closed before
     * expiring them (terminated in the Temporal UI, lost with a dev server's recent history, or
     * recorded by an early release that ended on the sent status), and they would stay
     * `successful` for ever. A campaign batch still retrying its other messages only starts its
     * receipt wait when they settle: its first sends are expired here, on time. A live workflow's
     * own expiry later finds them failed and leaves them so. Oldest first, up to `limit` a pass,
     * through messages_awaiting_receipt_idx.
     */
    async expireOverdueReceipts(options: { olderThanMs: number; limit: number; applicationId?: string }): Promise<{ expired: number }> {
      const { db } = deps;
      const cutoff = new Date(Date.now() - deps.config.AUTOMATA_RECEIPT_TIMEOUT - options.olderThanMs);
      const overdue = db("messages").select("id").where("status", "successful").where("sent_at", "<", cutoff).orderBy("sent_at").limit(options.limit);
      if (options.applicationId) overdue.where("application_id", options.applicationId);
      const expired = await db.transaction((trx) =>
        transitionMessagesWhere(trx, "fail", (q) => q.whereIn("id", overdue), { error_code: FAILURE_CODES.receiptTimeout, error_message: RECEIPT_TIMEOUT_MESSAGE }, { error_code: FAILURE_CODES.receiptTimeout }),
      );
      if (expired.length > 0) deps.logger.warn({ count: expired.length }, "reconciler expired receipts no workflow had expired by the end of their window");
      return { expired: expired.length };
    },

    /**
     * Erasure requests still `pending` after `olderThanMs`: the DELETE committed the request but its
     * workflow never ran (Temporal was unreachable or the API died before the start) and the client
     * did not retry. An erasure is owed regardless, so it is started here; the start reuses a
     * workflow that exists, and a workflow marks its request running first, so an old pending one
     * has none that ever got going. The table keeps every erasure ever made; partial indexes hold
     * only the pending ones (migration 20261203000300) and the running ones (20261204000200).
     */
    async restartPendingErasures(options: { olderThanMs: number; limit: number; applicationId?: string }): Promise<{ checked: number; started: number; failed: number }> {
      const pending = (await pendingErasureRequests(deps.db, options).select("id", "application_id")) as Array<{ id: string; application_id: string }>;
      // Also those left `running` by a workflow that ended without finishing them: an operator
      // terminated it in the UI (a step kept failing), or the dev server lost it. Nothing else would
      // ever run them again. One whose workflow still runs (retrying a step) is left to it.
      const running = (await erasureRequestsInStatus(deps.db, "running", options).select("id", "application_id")) as Array<{ id: string; application_id: string }>;
      const abandoned: typeof running = [];
      for (const request of running) {
        try {
          if (await erasureWorkflowEndedUnfinished(request.id)) abandoned.push(request);
        } catch (error) {
          deps.logger.error({ err: error, erasure_request_id: request.id, application_id: request.application_id }, "reconciler could not look at an erasure's workflow; a later pass tries again");
        }
      }
      const requests = [...pending, ...abandoned];
      let started = 0;
      let failed = 0;
      for (const request of requests) {
        try {
          await startErasureWorkflow(deps, request);
          started += 1;
        } catch (error) {
          failed += 1;
          deps.logger.error({ err: error, erasure_request_id: request.id, application_id: request.application_id }, "reconciler could not start an erasure; a later pass tries again");
        }
      }
      if (started > 0) deps.logger.warn({ count: started, abandoned: abandoned.length }, "reconciler started the workflows of pending (or abandoned) erasure requests");
      return { checked: pending.length + running.length, started, failed };
    },
  };
}

/**
 * Erasure requests still pending after `olderThanMs`, oldest first: the shape
 * `erasure_requests_pending_idx` serves.
 */
export function pendingErasureRequests(db: Knex, options: { olderThanMs: number; limit: number; applicationId?: string }): Knex.QueryBuilder {
  return erasureRequestsInStatus(db, "pending", options);
}

/** Erasure requests in `status` requested before `olderThanMs` ago, oldest first (a partial index per status serves it). */
function erasureRequestsInStatus(db: Knex, status: "pending" | "running", options: { olderThanMs: number; limit: number; applicationId?: string }): Knex.QueryBuilder {
  return db("erasure_requests")
    .where("status", status)
    .modify((q) => (options.applicationId ? q.where("application_id", options.applicationId) : q))
    .where("requested_at", "<", new Date(Date.now() - options.olderThanMs))
    .orderBy("requested_at")
    .limit(options.limit);
}
