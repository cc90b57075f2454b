import { ApplicationFailure, Context, heartbeat } from "@temporalio/activity";
import { heartbeatingWhile } from "./heartbeat";
import type { Knex } from "knex";
import type { Deps } from "../src/deps";
import { newId } from "../src/db/ids";
import { lockForTransaction } from "../src/db/knex";
import { inTransaction } from "../src/db/transactions";
import { RECORD_OUTCOME_ATTEMPTS, SEND_CHUNK_QUEUE_DEADLINE_MS } from "../src/messages/delivery";
import { MESSAGE_EXPIRED, expiredBeforeSend, toPushMessage, type StoredPushOptions } from "../src/messages/push-options";
import { debitBatchQuota, refundUnsentBatchQuota } from "../src/quota/quota";
import { changeSubscriptionStatus } from "../src/subscriptions/repository";
import { openDeviceToken, TOKEN_UNREADABLE } from "../src/subscriptions/device-token";
import { ProviderNotConfiguredError, usesApnsSandbox, type BatchOutcome, type PushMessage, type PushSubscriptionType, type TemporaryClass } from "../src/providers";
import { audienceQuery, parseTargetingCriteria, type TargetingCriteria } from "../src/campaigns/targeting";
import { countMessageEvents, insertCampaignMessages, transitionMessagesEach, transitionMessagesWhere, type PerMessageOutcome } from "../src/campaigns/bulk";
import { applicationIsActive, batchesWithUnsentMessages, ENDED_CAMPAIGN_STATUSES, inBatch, statusToActOn, type AudienceGroup, type BatchRange, type CampaignRow, type CampaignStatus } from "../src/campaigns/repository";
import { recipientRenderer, selectRecipientFields, type RecipientRecord, type RenderedContent } from "../src/campaigns/personalize";
import { deliveryGroups, deliveryPlanningStart, type DeliveryGroup } from "../src/campaigns/timezones";
import { messageOptionsAt } from "../src/campaigns/content";
import { CAMPAIGN_CATCHUP_WINDOW_MS, campaignScheduleId, completeEndedRecurringCampaign, runFireTime } from "../src/campaigns/schedules";
import { campaignBatchWorkflowId } from "../workflows/campaign-batch";
import { ApiError } from "../src/http/errors";
import { ScheduleNotFoundError, WorkflowNotFoundError } from "@temporalio/client";
import { messageRetriesTotal, observeProviderOutcome } from "../src/metrics/registry";
import { afterCommit } from "../src/metrics/after-commit";
import { UNSENT_STATUSES } from "../src/messages/state-machine";
import { ERRORED_RETRY_CLASS_SQL } from "../src/messages/retry-policy";
import { FAILURE_CODES, RECEIPT_TIMEOUT_MESSAGE, type FailureCode } from "../src/messages/failure-codes";

/**
 * One keyset page of a campaign's audience: how many matched and the last subscription id, and
 * the campaign's status in PostgreSQL (the truth; a signal the API could not deliver is caught here).
 */
export interface AudiencePage {
  count: number;
  last: string | null;
  /** The page size asked for after the application's ceiling (fewer rows = end of the audience). */
  limit?: number;
  status: CampaignStatus;
  /** Wait this long before starting the page's batch (application ceiling). */
  waitMs: number;
}

/** One keyset page: how many subscriptions and the last id (the next page starts after it). */
export interface AudiencePageBounds {
  count: number;
  last: string;
}

/** Consecutive audience pages, with the campaign's status and the ceiling's wait (see AudiencePage). */
export interface AudiencePages {
  pages: AudiencePageBounds[];
  /** Page size after the application's ceiling; a page shorter than this ends the audience. */
  limit: number;
  status: CampaignStatus;
  waitMs: number;
  /**
   * No recipient follows these pages (in this group). Absent in answers recorded before it existed;
   * needed because under an application ceiling fewer pages come back than were asked for.
   */
  ended?: boolean;
}

/** What startCampaignBatch did: null round = not sent (nothing to send, or quota), null settled = retries left. */
export interface BatchStart {
  messages: number;
  proceed: boolean;
  round: BatchSendResult | null;
  settled: { refunded: number; sent: number; failed: number } | null;
}

/** What one send round of a batch did, and what is left to retry (by failure class). */
export interface BatchSendResult {
  successful: number;
  failed: number;
  errored: Partial<Record<TemporaryClass, number>>;
  /** The largest Retry-After a rate-limited provider asked for in this round. */
  retryAfterMs?: number;
  /** The largest Retry-After a provider answering 503 (outage) asked for in this round. */
  outageRetryAfterMs?: number;
  /**
   * The first push in this round a provider refused for the application's own credentials
   * (`provider_auth_failed`: a revoked .p8 key, a disabled service account): every later push of
   * the application would fail the same way, so the campaign pauses.
   */
  credentialRefusal?: CredentialRefusal;
}

/**
 * Refusals that can be about some devices only, not every push of the credentials: APNs's
 * BadEnvironmentKeyInToken (a key Apple limits to one environment, refused in the other) and
 * FCM's THIRD_PARTY_AUTH_ERROR (an iOS or web token in a Firebase project without that
 * platform's key).
 */
const DEVICE_SCOPED_AUTH_CODES: ReadonlySet<string> = new Set(["BadEnvironmentKeyInToken", "messaging/third-party-auth-error"]);

/**
 * Whether a provider group's `provider_auth_failed` answer speaks for the application's
 * credentials, so the campaign pauses. A refusal of the credentials themselves always does
 * (InvalidProviderToken, PERMISSION_DENIED, …). A device-scoped one ({@link DEVICE_SCOPED_AUTH_CODES})
 * does not when the same provider accepted other pushes of the group, nor as the APNs sandbox's
 * BadEnvironmentKeyInToken (a production key: development builds fail, the audience goes on).
 * Messages it does not pause for still fail, one by one.
 */
export function refusalSpeaksForCredentials(group: { platform: string; sandbox: boolean; accepted: number }, code: string): boolean {
  if (!DEVICE_SCOPED_AUTH_CODES.has(code)) return true;
  if (group.accepted > 0) return false;
  return !(group.platform === "apns" && group.sandbox && code === "BadEnvironmentKeyInToken");
}

/** A provider's refusal of an application's credentials, as the paused campaign reports it. */
export interface CredentialRefusal {
  provider: string;
  code: string;
}

/** What follows the reason in the error_message of a campaign that paused itself on a credential refusal. */
const PAUSED_FOR_CREDENTIALS = "; the campaign paused itself.";

/** The advisory lock a batch's create holds until its messages are committed (attempts take turns; an abort waits). */
function batchCreateLock(batch: Pick<BatchRange, "campaignId" | "batchNo">): string {
  return `campaign-batch:${batch.campaignId}:${batch.batchNo}`;
}

/** Messages sent per transaction: the rows stay locked while the provider answers (cancel waits). */
const SEND_CHUNK = 100;

/** Longest the one-off audience count may take before it is given up (query_canceled). */
const AUDIENCE_COUNT_TIMEOUT_MS = 20_000;


/** Ledger batch id of a campaign batch (idempotency scope of its debit and refund). */
export function campaignBatchId(range: Pick<BatchRange, "campaignId" | "batchNo">): string {
  return `${range.campaignId}.b${range.batchNo}`;
}

async function countOf(query: Knex.QueryBuilder): Promise<number> {
  const [row] = (await query.count({ n: "*" })) as Array<{ n: string | number }>;
  return Number(row?.n ?? 0);
}

interface SendRow {
  id: string;
  application_id: string;
  title: string | null;
  body: string | null;
  data: Record<string, unknown>;
  options: StoredPushOptions;
  created_at: Date;
  /** Provider answers recorded so far: 0 before the first attempt. */
  attempts: number;
  /** Null once user erasure deleted the subscription (its messages keep their row). */
  subscription_id: string | null;
  /** The subscription's columns are null when it no longer exists. */
  subscription_type: string | null;
  subscription_status: number | null;
  archived_at: Date | null;
  token_ciphertext: string | null;
  token_hash: string | null;
  test_type: number | null;
}

/** Activities of the campaign and campaign-batch workflows; each is idempotent so Temporal may retry it. */
export function createCampaignActivities(deps: Deps) {
  const { db } = deps;

  /**
   * Reserves `units` sends in the application's pacing row and answers how long to wait before
   * starting them: the reserved span ends at the new next_free_at and starts `span` earlier.
   */
  async function reserveSendSlot(applicationId: string, units: number, perMinute: number): Promise<number> {
    const spanMs = Math.ceil((units * 60_000) / perMinute);
    const result = await db.raw(
      `INSERT INTO application_send_pacing AS p (application_id, next_free_at)
         VALUES (?, clock_timestamp() + make_interval(secs => ? / 1000.0))
       ON CONFLICT (application_id) DO UPDATE
         SET next_free_at = greatest(p.next_free_at, clock_timestamp()) + make_interval(secs => ? / 1000.0)
       RETURNING extract(epoch FROM (next_free_at - clock_timestamp())) * 1000 AS until_free_ms`,
      [applicationId, spanMs, spanMs],
    );
    const untilFreeMs = Number((result.rows as Array<{ until_free_ms: string | number }>)[0]!.until_free_ms);
    return Math.max(0, Math.round(untilFreeMs - spanMs));
  }

  /**
   * Fails the batch's messages that `where` picks (their status must allow it) with `errorCode`,
   * in one transaction; answers how many changed.
   */
  async function failInBatch(
    batch: Pick<BatchRange, "campaignId" | "applicationId" | "batchNo">,
    where: (q: Knex.QueryBuilder, trx: Knex.Transaction) => void,
    errorCode: FailureCode,
    errorMessage: string,
    details?: { error_details: Record<string, unknown>; event: Record<string, unknown> },
  ): Promise<number> {
    const changed = await db.transaction((trx) =>
      transitionMessagesWhere(
        trx,
        "fail",
        (q) => {
          inBatch(batch)(q);
          where(q, trx);
        },
        { error_code: errorCode, error_message: errorMessage, ...(details ? { error_details: details.error_details } : {}) },
        { error_code: errorCode, ...details?.event },
      ),
    );
    return changed.length;
  }

  /**
   * Fails the unsent messages of a batch whose workflow ended abnormally and refunds every message
   * of it that was never sent: also those an earlier round failed (the batch never reached its
   * settle step), and those of an earlier attempt of this activity that crashed between failing
   * them and refunding them (a retry changes no message but still owes their refund).
   */
  async function abortBatch(batch: Pick<BatchRange, "campaignId" | "applicationId" | "batchNo">): Promise<void> {
    // An attempt of the batch's create still running (the workflow was terminated under it) holds
    // this lock until its messages are committed: wait for them, or they would be created after
    // this abort looked, stay pending with nobody to send them, and keep their debit.
    await db.transaction((trx) => lockForTransaction(trx, batchCreateLock(batch)));
    await failInBatch(batch, (q) => q.whereIn("status", UNSENT_STATUSES), FAILURE_CODES.batchAborted, "the batch workflow ended before sending this message");
    await refundUnsentOf(batch);
  }

  /**
   * Brings the batch's refunds up to its messages that were never sent (failed or cancelled
   * unsent); a repeat or a twin refunds nothing more. Answers that count.
   */
  async function refundUnsentOf(batch: Pick<BatchRange, "campaignId" | "applicationId" | "batchNo">): Promise<number> {
    const unsent = await countOf(db("messages").where(inBatch(batch)).whereIn("status", ["failed", "cancelled"]).whereNull("sent_at"));
    await refundUpTo(batch, unsent);
    return unsent;
  }

  /** Brings the batch's refunds up to `unsent` messages (nothing when it has none). */
  async function refundUpTo(batch: Pick<BatchRange, "campaignId" | "applicationId" | "batchNo">, unsent: number): Promise<void> {
    if (unsent > 0) await refundUnsentBatchQuota(db, { applicationId: batch.applicationId, batchId: campaignBatchId(batch), unsentUnits: unsent });
  }

  /**
   * After a send chunk threw: fails the batch's messages that have been pending longer than the
   * pending timeout (so a fault that keeps recurring, such as provider credentials that will not
   * load, ends them instead of retrying the activity for ever). Answers whether any changed.
   */
  async function failPendingPastTimeout(range: BatchRange, error: unknown): Promise<boolean> {
    const changed = await failInBatch(
      range,
      (q, trx) => q.where("status", "pending").where("created_at", "<", trx.raw("now() - make_interval(secs => ?)", [deps.config.AUTOMATA_PENDING_TIMEOUT / 1000])),
      FAILURE_CODES.pendingTimeout,
      `sending kept failing until the pending timeout (${error instanceof Error ? error.name : typeof error}; details in the worker log)`,
    );
    if (changed > 0) deps.logger.error({ err: error, campaign_id: range.campaignId, batch: range.batchNo, messages: changed }, "campaign batch kept failing past the pending timeout");
    return changed > 0;
  }

  /** Sends the batch's pending messages in locked chunks until none is left. */
  async function sendPending(range: BatchRange, result: BatchSendResult): Promise<void> {
    const cancellation = Context.current().cancellationSignal;
    for (;;) {
      // A worker past its shutdown grace (or a cancelled attempt) stops between chunks, never in
      // one: the chunk the providers answered is committed, and the retried attempt sends only what
      // is still pending. Carrying on until the platform's SIGKILL rolled back a chunk whose pushes
      // the providers had already accepted, and the retry sent them again.
      if (cancellation.aborted) throw ApplicationFailure.retryable("the batch's send round stopped between chunks (worker shutting down or attempt cancelled); the retried attempt resumes with what is still pending", "SendRoundStopped");
      let count: number;
      try {
        count = await sendOneChunk(range, result);
      } catch (error) {
        // Temporal retries the activity; only what is past the pending timeout is given up here.
        if (await failPendingPastTimeout(range, error)) continue;
        throw error;
      }
      if (count === 0) break;
      heartbeat({ successful: result.successful, failed: result.failed });
    }
  }

  /** Locks, sends and records one chunk of the batch's pending messages; answers how many it took. */
  async function sendOneChunk(range: BatchRange, result: BatchSendResult): Promise<number> {
    const { taken, crash } = await db.transaction(async (trx) => {
      // A left join: a message whose subscription was erased meanwhile must still be taken (and
      // failed) here, or it would stay pending and unrefunded when the batch settles.
      const rows = (await trx("messages as m")
        .leftJoin("subscriptions as s", (on) => on.on("s.id", "m.subscription_id").andOn("s.application_id", "m.application_id"))
        .where(inBatch(range, "m"))
        .where("m.status", "pending")
        .select("m.id", "m.application_id", "m.title", "m.body", "m.data", "m.options", "m.created_at", "m.attempts", "m.subscription_id", "s.subscription_type", "s.subscription_status", "s.archived_at", "s.token_ciphertext", "s.token_hash", "s.test_type")
        .orderBy("m.subscription_id")
        .limit(SEND_CHUNK)
        .forUpdate("m")) as SendRow[];
      return { taken: rows.length, crash: rows.length > 0 ? await sendChunk(trx, rows, result) : undefined };
    });
    // Thrown after the commit, so the other providers' answers are kept; the crashed group's
    // messages are still pending and the retried activity sends them again.
    if (crash !== undefined) throw crash;
    return taken;
  }

  async function loadCampaign(campaignId: string, trx: Knex | Knex.Transaction = db): Promise<CampaignRow> {
    const campaign = await trx("message_campaigns").where("id", campaignId).first<CampaignRow | undefined>();
    if (!campaign) throw ApplicationFailure.nonRetryable(`campaign ${campaignId} does not exist`, "CampaignNotFound");
    return campaign;
  }

  /** Fails messages the provider never accepted (their quota comes back when the batch settles). */
  function failUnsent(rows: readonly SendRow[], provider: string | null, errorCode: FailureCode, errorMessage: string): PerMessageOutcome[] {
    return rows.map((r) => ({ id: r.id, provider, error_code: errorCode, error_message: errorMessage, event: { error_code: errorCode }, attempted: false }));
  }

  /**
   * Sends one locked chunk grouped by provider and records every outcome in bulk, in `trx`.
   * Answers what a provider client threw (its group is left pending), for the caller to throw
   * once the others' outcomes are committed.
   */
  async function sendChunk(trx: Knex.Transaction, rows: readonly SendRow[], result: BatchSendResult): Promise<unknown> {
    const sent: PerMessageOutcome[] = [];
    const failed: PerMessageOutcome[] = [];
    const errored: PerMessageOutcome[] = [];
    const statusChanges: Array<{ applicationId: string; subscriptionId: string; subscriptionType: string; toStatus: number; code: string; messageId: string; tokenHash: string }> = [];
    const groups = new Map<string, SendRow[]>();
    const nowMs = Date.now();
    for (const row of rows) {
      if (row.subscription_status === null || row.subscription_status <= 0 || row.archived_at) {
        failed.push(...failUnsent([row], null, FAILURE_CODES.subscriptionDisabled, "the subscription is gone or no longer subscribed"));
      } else if ((row.subscription_type !== "iOSPush" && row.subscription_type !== "AndroidPush") || !row.token_ciphertext) {
        failed.push(...failUnsent([row], null, FAILURE_CODES.invalidSubscriptionType, `${row.subscription_type} is not a sendable channel yet`));
      } else if (expiredBeforeSend(row.options, row.created_at, row.attempts, nowMs)) {
        failed.push(...failUnsent([row], null, MESSAGE_EXPIRED.code, MESSAGE_EXPIRED.message));
      } else {
        const sandbox = usesApnsSandbox(row.test_type);
        const key = `${row.subscription_type}:${sandbox}`;
        const group = groups.get(key);
        if (group) group.push(row);
        else groups.set(key, [row]);
      }
    }
    // Credentials changed since this worker read them (an operator fixed ones a provider refused,
    // then resumed the campaign it paused) are read again, not sent with for up to 30 s more.
    if (groups.size > 0) await deps.push.forgetChangedCredentials(rows[0]!.application_id, trx);
    /** Sends one provider's group of the chunk and sorts its answers into sent, failed and errored. */
    async function sendGroup(group: SendRow[]): Promise<void> {
      const first = group[0]!;
      let provider;
      try {
        // The bulk lane: a campaign's queue of requests never delays a single message's send.
        provider = await deps.push.providerFor(first.application_id, first.subscription_type as PushSubscriptionType, usesApnsSandbox(first.test_type), trx, "bulk");
      } catch (error) {
        if (!(error instanceof ProviderNotConfiguredError)) throw error;
        failed.push(...failUnsent(group, null, FAILURE_CODES.providerNotConfigured, error.message));
        return;
      }
      // Tokens are decrypted here, inside the activity, and never leave this process. One that
      // will not open fails its own message; the rest of the group is still sent.
      const sendable: SendRow[] = [];
      const messages: PushMessage[] = [];
      for (const row of group) {
        const token = openDeviceToken(deps, row.token_ciphertext!, row.application_id, { message_id: row.id, subscription_id: row.subscription_id! });
        if (token === undefined) {
          failed.push(...failUnsent([row], null, TOKEN_UNREADABLE.code, TOKEN_UNREADABLE.message));
        } else {
          sendable.push(row);
          messages.push(toPushMessage(row, token));
        }
      }
      if (messages.length === 0) return;
      const started = process.hrtime.bigint();
      let outcomes: BatchOutcome[];
      try {
        // A worker past its shutdown grace stops the chunk's pushes that wait for a connection: they
        // stay pending for the retried attempt, and the chunk commits in the time its requests
        // already under way take (the deploy's kill timeout allows for that, not for a queue). So
        // does a queue longer than SEND_CHUNK_QUEUE_DEADLINE_MS: the next chunk takes them.
        const stop = AbortSignal.any([Context.current().cancellationSignal, AbortSignal.timeout(SEND_CHUNK_QUEUE_DEADLINE_MS)]);
        outcomes = await provider.sendBatch(messages, { stop });
      } catch (error) {
        // Adapters answer outcomes, so a throw is a bug or a crash in the client: still a provider error.
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        for (let i = 0; i < messages.length; i++) observeProviderOutcome(provider.platform, { kind: "exception", reason: "exception" }, seconds);
        throw error;
      }
      // The provider was called whether or not this transaction commits, so these count at once.
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      for (const outcome of outcomes) if (outcome.kind !== "not_sent") observeProviderOutcome(provider.platform, outcome, seconds);
      const refusals: CredentialRefusal[] = [];
      let accepted = 0;
      outcomes.forEach((outcome, i) => {
        const row = sendable[i]!;
        if (outcome.kind === "not_sent") return;
        if (outcome.kind === "success") {
          accepted++;
          sent.push({ id: row.id, provider: provider.platform, provider_message_id: outcome.providerMessageId, event: { provider: provider.platform, provider_message_id: outcome.providerMessageId } });
        } else if (outcome.kind === "permanent") {
          failed.push({
            id: row.id,
            provider: provider.platform,
            error_code: outcome.reason,
            error_message: outcome.detail,
            error_details: { provider_code: outcome.code },
            event: { error_code: outcome.reason, provider_code: outcome.code },
          });
          if (outcome.reason === "provider_auth_failed") refusals.push({ provider: provider.platform, code: outcome.code });
          if (outcome.subscriptionStatus !== undefined) {
            statusChanges.push({ applicationId: row.application_id, subscriptionId: row.subscription_id!, subscriptionType: row.subscription_type!, toStatus: outcome.subscriptionStatus, code: outcome.code, messageId: row.id, tokenHash: row.token_hash! });
          }
        } else {
          errored.push({
            id: row.id,
            provider: provider.platform,
            error_code: outcome.reason,
            error_message: `${outcome.class}: ${outcome.code}`,
            error_details: { class: outcome.class, code: outcome.code, retry_after_ms: outcome.retryAfterMs ?? null },
            event: { class: outcome.class, code: outcome.code, retry_after_ms: outcome.retryAfterMs ?? null },
          });
          if (outcome.retryAfterMs !== undefined) {
            if (outcome.class === "rate_limited") result.retryAfterMs = Math.max(result.retryAfterMs ?? 0, outcome.retryAfterMs);
            if (outcome.class === "provider_outage") result.outageRetryAfterMs = Math.max(result.outageRetryAfterMs ?? 0, outcome.retryAfterMs);
          }
        }
      });
      const providerGroup = { platform: provider.platform, sandbox: usesApnsSandbox(first.test_type), accepted };
      const speaking = refusals.find((refusal) => refusalSpeaksForCredentials(providerGroup, refusal.code));
      if (speaking !== undefined) result.credentialRefusal ??= speaking;
    }
    // The providers' groups go out at once: a chunk waits for one round trip, not one per
    // provider. A group whose client threw adds no outcome; the others' are recorded below.
    const sends = await Promise.allSettled([...groups.values()].map(sendGroup));
    const crashes = sends.flatMap((send) => (send.status === "rejected" ? [send.reason as unknown] : []));
    // The providers have answered: from here a rollback of the chunk would send its pushes again
    // on the retry. So the outcomes are recorded in a savepoint that is re-run when PostgreSQL picks
    // it as a deadlock victim: two chunks' statement triggers can take the same campaign, daily-stats
    // and subscription-stats counter rows in different orders (send/fail/error are three statements).
    // Rolling back to the savepoint releases what the recording locked, keeps the message rows
    // locked, and lets the other transaction go on.
    // Status changes in (type, id) order: the subscription-stats row of each type is then taken in
    // the same order by every chunk.
    const typeThenId = (change: (typeof statusChanges)[number]) => `${change.subscriptionType}|${change.subscriptionId}`;
    statusChanges.sort((x, y) => (typeThenId(x) < typeThenId(y) ? -1 : 1));
    const recorded = await inTransaction(
      trx,
      async (savepoint) => {
        const successful = (await transitionMessagesEach(savepoint, "send", sent)).length;
        const failedCount = (await transitionMessagesEach(savepoint, "fail", failed)).length;
        await transitionMessagesEach(savepoint, "error", errored);
        // Same REF-002 rules as a single message: a permanent token error changes the subscription.
        for (const change of statusChanges) {
          await changeSubscriptionStatus(savepoint, {
            applicationId: change.applicationId,
            subscriptionId: change.subscriptionId,
            toStatus: change.toStatus,
            eventType: "delivery_failed",
            reason: change.code,
            source: "provider",
            data: { message_id: change.messageId },
            sentTokenHash: change.tokenHash,
          });
        }
        return { successful, failed: failedCount };
      },
      RECORD_OUTCOME_ATTEMPTS,
    );
    result.successful += recorded.successful;
    result.failed += recorded.failed;
    // Each errored message is retried by the batch's next round, as a single message is by its workflow.
    const retryClasses = errored.map((e) => (e.error_details as { class: TemporaryClass }).class);
    if (retryClasses.length > 0) afterCommit(trx, () => retryClasses.forEach((retryClass) => messageRetriesTotal.inc({ class: retryClass })));
    if (crashes.length === 0) return undefined;
    return crashes.length === 1 ? crashes[0] : new AggregateError(crashes, "provider clients threw");
  }

  /**
   * Counts the whole audience (all timezone groups) once, best effort: the count is for the stats'
   * `remaining`, so a huge audience whose count outlasts AUDIENCE_COUNT_TIMEOUT leaves it unknown
   * (null) rather than delaying the first batch or failing the activity that starts the campaign.
   */
  async function recordAudienceSize(campaign: CampaignRow, criteria: TargetingCriteria): Promise<void> {
    try {
      await db.transaction(async (trx) => {
        await trx.raw(`SET LOCAL statement_timeout = ${AUDIENCE_COUNT_TIMEOUT_MS}`);
        const [row] = (await audienceQuery(trx, campaign.application_id, criteria).count({ n: "*" })) as Array<{ n: string | number }>;
        await trx("message_campaigns").where("id", campaign.id).whereNull("audience_size").update({ audience_size: Number(row?.n ?? 0) });
      });
    } catch (error) {
      if ((error as { code?: unknown }).code !== "57014") throw error;
      deps.logger.warn({ campaign_id: campaign.id }, "audience count took too long; the campaign's remaining count is left unknown");
    }
  }

  /** See nextAudiencePages. */
  async function nextPages(input: { campaignId: string; after: string | null; limit: number; pages: number; group?: AudienceGroup }): Promise<AudiencePages> {
    const campaign = await loadCampaign(input.campaignId);
    if (campaign.status !== "running") return { pages: [], limit: input.limit, status: campaign.status, waitMs: 0 };
    const app = (await db("applications").where("id", campaign.application_id).first("campaign_max_per_minute", "is_active")) as { campaign_max_per_minute: number | null; is_active: boolean } | undefined;
    const held = statusToActOn(campaign.status, app?.is_active ?? false);
    if (held !== "running") return { pages: [], limit: input.limit, status: held, waitMs: 0 };
    const ceiling = app?.campaign_max_per_minute ?? null;
    const limit = ceiling ? Math.min(input.limit, Math.max(1, Math.ceil(ceiling / 6))) : input.limit;
    const pageCount = ceiling ? 1 : Math.max(1, input.pages);
    const criteria = parseTargetingCriteria(campaign.targeting_criteria);
    // The first page: record the whole audience's size once (all timezone groups), so the stats'
    // `remaining` includes recipients whose messages are not created yet. Conditional, so a retried
    // activity or the first page of a later group never changes it; no workflow change needed.
    if (input.after === null && campaign.audience_size === null) await recordAudienceSize(campaign, criteria);
    const query = audienceQuery(db, campaign.application_id, criteria, input.group).select("s.id").orderBy("s.id").limit(limit * pageCount);
    if (input.after) query.where("s.id", ">", input.after);
    // Only counts and boundary ids leave the activity: each batch re-reads its slice by range.
    const ids = ((await query) as Array<{ id: string }>).map((r) => r.id);
    const pages: AudiencePageBounds[] = [];
    for (let i = 0; i < ids.length; i += limit) {
      const slice = ids.slice(i, i + limit);
      pages.push({ count: slice.length, last: slice.at(-1)! });
    }
    const waitMs = ceiling && ids.length > 0 ? await reserveSendSlot(campaign.application_id, ids.length, ceiling) : 0;
    return { pages, limit, status: campaign.status, waitMs, ended: ids.length < limit * pageCount };
  }

  /**
   * The next fire of a recurring campaign's schedule, where a run's timezone delivery stops: the
   * zones whose instant comes at or after it are that run's. None when the schedule is gone or fires
   * no more, or is paused (its listed next fire may never come): the run then plans every zone, as
   * a one-off campaign does.
   */
  async function nextScheduledFire(recurringCampaignId: string): Promise<Date | undefined> {
    try {
      const schedule = await deps.temporal.schedule.getHandle(campaignScheduleId(recurringCampaignId)).describe();
      return schedule.state.paused ? undefined : schedule.info.nextActionTimes[0];
    } catch (error) {
      if (error instanceof ScheduleNotFoundError) return undefined;
      throw error;
    }
  }

  const activities = {
    /** draft/scheduled → running (stamps started_at once); answers the campaign's status afterwards. */
    async markCampaignRunning(campaignId: string): Promise<CampaignStatus> {
      const [row] = (await db("message_campaigns")
        .where("id", campaignId)
        .whereIn("status", ["draft", "scheduled", "running"])
        .update({ status: "running", started_at: db.raw("coalesce(started_at, now())") }, ["status"])) as Array<{ status: CampaignStatus }>;
      return row?.status ?? (await loadCampaign(campaignId)).status;
    },

    /**
     * Pauses a running campaign whose provider refused the application's credentials, saying why in
     * its `error_message`: sending the rest of the audience would fail every push alike (and fail
     * those messages for good). Resuming, once the credentials are fixed, sends the rest. Answers
     * whether this call paused it.
     */
    async pauseCampaignForCredentials(campaignId: string, refusal: CredentialRefusal): Promise<boolean> {
      const reason = `${refusal.provider === "apns" ? "APNs" : "FCM"} refused the application's credentials (${refusal.code})`;
      const errorMessage = `${reason}${PAUSED_FOR_CREDENTIALS} Fix the credentials (PATCH /admin/applications/:id), then resume it; campaign batches read them again at once.`;
      const paused = await db.transaction(async (trx) => {
        // A run's recurring campaign is locked before the run, the order of the API's pause and
        // resume (campaign, then its runs): the other order deadlocked with an operator's pause.
        const parent = (await trx("message_campaigns").where("id", campaignId).first("parent_campaign_id")) as { parent_campaign_id: string | null } | undefined;
        if (parent?.parent_campaign_id) await trx("message_campaigns").where("id", parent.parent_campaign_id).forNoKeyUpdate().first("id");
        const [run] = (await trx("message_campaigns").where({ id: campaignId, status: "running" }).update({ status: "paused", error_message: errorMessage }, ["application_id", "parent_campaign_id"])) as Array<{ application_id: string; parent_campaign_id: string | null }>;
        if (!run) return undefined;
        // A run of a recurring campaign: the campaign pauses with it. Its own resume is what the
        // operator reaches for, and it resumes the run; a paused run alone held the schedule's
        // overlap slot (every later fire skipped) while the campaign still read "in progress".
        if (run.parent_campaign_id !== null) {
          await trx("message_campaigns").where({ id: run.parent_campaign_id, application_id: run.application_id, status: "running" }).update({ status: "paused", error_message: errorMessage });
        }
        return run;
      });
      if (!paused) return false;
      deps.push.forgetCredentials(paused.application_id);
      deps.logger.warn({ campaign_id: campaignId, parent_campaign_id: paused.parent_campaign_id, provider: refusal.provider, provider_code: refusal.code }, "campaign paused: the provider refused the application's credentials");
      return true;
    },

    /**
     * The campaign's status in PostgreSQL (the workflow re-reads it while it waits or is paused),
     * held as paused while its application is deactivated.
     */
    async campaignStatus(campaignId: string): Promise<CampaignStatus> {
      const campaign = await loadCampaign(campaignId);
      return statusToActOn(campaign.status, await applicationIsActive(db, campaign.application_id));
    },

    /**
     * Timezone delivery: the audience's distinct timezones grouped by the instant their local
     * time next reads `local_time` after `fromMs`. One DISTINCT over the audience (index-bounded
     * by the targeting), never the subscriptions themselves.
     */
    async planDeliveryGroups(input: { campaignId: string; fromMs: number }): Promise<DeliveryGroup[]> {
      const campaign = await loadCampaign(input.campaignId);
      if (!campaign.delivery) return [];
      const criteria = parseTargetingCriteria(campaign.targeting_criteria);
      const zones = (await audienceQuery(db, campaign.application_id, criteria).distinct("s.timezone")) as Array<{ timezone: string | null }>;
      const nominal = (campaign.run_key === null ? null : runFireTime(campaign.run_key)) ?? campaign.scheduled_at;
      return deliveryGroups(
        zones.map((z) => z.timezone),
        campaign.delivery.fallback_timezone,
        campaign.delivery.local_time,
        deliveryPlanningStart(nominal === null ? null : new Date(nominal), new Date(input.fromMs), CAMPAIGN_CATCHUP_WINDOW_MS),
        campaign.parent_campaign_id === null ? undefined : await nextScheduledFire(campaign.parent_campaign_id),
      );
    },

    /**
     * The next ≤ `limit` matching subscriptions after `after` (keyset on id, never OFFSET), and the
     * wait before they may be sent under the application's ceiling (applications.
     * campaign_max_per_minute): the page is reserved in one pacing row per application, advanced
     * atomically, so all campaigns on all workers draw from the same ceiling. Under a ceiling a page
     * is at most ~10 s of it, so pacing stays smooth instead of bursting 500 then idling.
     * (Single-page form, kept for campaign workflows that started before nextAudiencePages.)
     */
    async nextAudiencePage(input: { campaignId: string; after: string | null; limit: number; group?: AudienceGroup }): Promise<AudiencePage> {
      const answer = await nextPages({ ...input, pages: 1 });
      const page = answer.pages[0];
      return { count: page?.count ?? 0, last: page?.last ?? null, limit: answer.limit, status: answer.status, waitMs: answer.waitMs };
    },

    /**
     * Up to `pages` consecutive keyset pages of ≤ `limit` subscriptions after `after`, so the
     * campaign workflow starts that many batches in one workflow task instead of one activity and
     * one task per batch (the fan-out rate was the campaign's ceiling). Only ids cross into the
     * activity, at most pages × limit of them. Under the application's ceiling one page is
     * answered, paced as in nextAudiencePage.
     */
    async nextAudiencePages(input: { campaignId: string; after: string | null; limit: number; pages: number; group?: AudienceGroup }): Promise<AudiencePages> {
      return nextPages(input);
    },

    /**
     * Which of these batch workflows have closed (completed, failed, terminated, timed out). A
     * batch that failed or was terminated never signals batchDone; the campaign frees its window
     * slot from this answer (also for batches started by an earlier run, before continue-as-new).
     * Such a batch's unsent messages would otherwise stay pending for ever: they fail with
     * `batch_aborted` and their units are refunded, so every message still ends somewhere.
     */
    async closedCampaignBatches(input: { campaignId: string; applicationId: string; batchNos: number[] }): Promise<number[]> {
      const closed: number[] = [];
      for (const batchNo of input.batchNos) {
        let status: string;
        try {
          status = (await deps.temporal.workflow.getHandle(campaignBatchWorkflowId(input.campaignId, batchNo)).describe()).status.name;
        } catch (error) {
          if (!(error instanceof WorkflowNotFoundError)) throw error;
          status = "NOT_FOUND";
        }
        if (status === "RUNNING") continue;
        closed.push(batchNo);
        if (status !== "COMPLETED") await abortBatch({ campaignId: input.campaignId, applicationId: input.applicationId, batchNo });
      }
      return closed;
    },

    /**
     * Creates the batch's messages (one multi-row insert, `pending`, content rendered at campaign
     * creation) for the still-matching subscriptions in its id range, once: a batch that has
     * messages keeps exactly those. Answers how many messages the batch has; a cancelled campaign
     * creates none.
     */
    async createCampaignBatch(range: BatchRange): Promise<{ messages: number }> {
      return db.transaction(async (trx) => {
        // Attempts of one batch take turns: a retry started while the first attempt still runs
        // (its heartbeat timed out) would otherwise read the audience before the first commits and
        // add whoever joined the range meanwhile — messages the first attempt's debit never paid for.
        await lockForTransaction(trx, batchCreateLock(range));
        // Shared row lock: a cancel's UPDATE of the campaign waits until these messages are
        // committed, so the bulk cancel that follows it always sees them, while the batches of one
        // campaign create side by side (an exclusive lock here made creation one batch at a time,
        // which capped a campaign near 2,000 messages/s). Nothing below updates the campaign row:
        // two shared holders upgrading would deadlock (counts are kept by triggers on messages).
        const campaign = await trx("message_campaigns").where("id", range.campaignId).forShare().first<CampaignRow | undefined>();
        if (!campaign) throw ApplicationFailure.nonRetryable(`campaign ${range.campaignId} does not exist`, "CampaignNotFound");
        // A batch's recipients are fixed by its first committed create: a retry (the worker died
        // before the debit, or the activity timed out) creates nothing more, even for a
        // subscription that has (re)joined the range since. Otherwise the batch would hold more
        // messages than its one debit paid for, and their refund would exceed the debit.
        // Counted before the cancel check: a batch created (perhaps debited, partly sent) before
        // its campaign was cancelled still has messages to settle.
        const existing = await countOf(trx("messages").where(inBatch(range)));
        if (existing > 0) return { messages: existing };
        if (campaign.status === "cancelled") return { messages: 0 };
        const criteria = parseTargetingCriteria(campaign.targeting_criteria);
        const { content } = campaign;
        const personalized = content.personalized;
        const slice = audienceQuery(trx, campaign.application_id, criteria, range.group)
          .where("s.id", "<=", range.last)
          .select("s.id", "s.user_id", "s.subscription_type")
          .orderBy("s.id");
        if (range.after) slice.where("s.id", ">", range.after);
        // Recipient fields are read only when the template uses them.
        if (personalized) selectRecipientFields(slice);
        // Without personalization only id, user_id and subscription_type are read.
        const subscriptions = (await slice) as RecipientRecord[];
        const unrenderable = new Map<string, ApiError>();
        const renderFor = personalized ? recipientRenderer(personalized, content.variables) : undefined;
        const rows = subscriptions.map((s) => {
          const id = newId();
          let rendered: RenderedContent = { title: content.title, body: content.body, data: content.data ?? {} };
          if (renderFor) {
            try {
              rendered = renderFor({ ...s, subscription_id: s.id });
            } catch (error) {
              // This recipient lacks a required field: its message fails below instead of sending
              // a broken text; everyone else in the batch still gets theirs.
              if (!(error instanceof ApiError)) throw error;
              unrenderable.set(id, error);
              rendered = { title: null, body: null, data: {} };
            }
          }
          return { id, subscription_id: s.id, user_id: s.user_id, subscription_type: s.subscription_type, ...rendered };
        });
        const inserted = await insertCampaignMessages(trx, {
          applicationId: campaign.application_id,
          campaignId: campaign.id,
          batchNo: range.batchNo,
          templateId: campaign.template_id,
          templateVersion: campaign.template_version,
          // ttl_seconds counts from now, when this batch creates its messages (right before they
          // are sent); a retried activity creates none again, so the expiry is fixed once.
          options: messageOptionsAt(content.options, new Date()),
          personalized: Boolean(personalized),
          messages: rows,
        });
        if (inserted.length > 0) {
          countMessageEvents(trx, "accepted", inserted);
          const failedRender = inserted.filter((m) => unrenderable.has(m.id));
          if (failedRender.length > 0) {
            await transitionMessagesEach(
              trx,
              "fail",
              failedRender.map((m) => {
                const error = unrenderable.get(m.id)!;
                return { id: m.id, provider: null, error_code: error.code, error_message: error.message, error_details: error.details, event: { error_code: error.code }, attempted: false };
              }),
            );
          }
        }
        // Counted, not inserted.length: a timed-out twin of this attempt may have created them.
        return { messages: await countOf(trx("messages").where(inBatch(range))) };
      });
    },

    /**
     * Debits the whole batch in one ledger transfer (idempotent per batch id). Exhausted quota fails
     * every unsent message of the batch with `quota_exceeded`.
     */
    async debitCampaignBatch(range: BatchRange): Promise<{ proceed: boolean }> {
      const units = await countOf(db("messages").where(inBatch(range)));
      if (units === 0) return { proceed: false };
      if ((await loadCampaign(range.campaignId)).status === "cancelled") {
        // Cancelled after this batch was created: nothing is debited and nothing is sent.
        await db.transaction((trx) => transitionMessagesWhere(trx, "cancel", inBatch(range), {}, { source: "campaign_cancel" }));
        return { proceed: false };
      }
      const debit = await debitBatchQuota(db, { applicationId: range.applicationId, batchId: campaignBatchId(range), units });
      if (debit.status !== "exhausted") {
        // An abort (the batch's workflow was terminated while this attempt ran on) that failed the
        // messages before this debit found nothing to refund; its messages are owed back now. The
        // refund is "up to the unsent count", so an abort after the debit and this never both pay.
        await refundUnsentOf(range);
        return { proceed: true };
      }
      // Only the unsent: a retry can find part of the batch delivered, by an attempt that ran while
      // the application was unlimited (no ledger entry) before an operator set a quota.
      await failInBatch(range, (q) => q.whereIn("status", UNSENT_STATUSES), FAILURE_CODES.quotaExceeded, `${debit.period} quota exhausted`, { error_details: debit, event: { period: debit.period } });
      return { proceed: false };
    },

    /**
     * One send round: every still-`pending` message of the batch, in locked chunks, through the
     * provider's sendBatch. A retried activity resumes with what is still pending, so nothing that
     * was committed is sent twice. It heartbeats every few seconds, also while a provider call is
     * in flight, so a dead worker is noticed within the short heartbeat timeout.
     */
    async sendCampaignBatch(range: BatchRange): Promise<BatchSendResult> {
      const result: BatchSendResult = { successful: 0, failed: 0, errored: {} };
      await heartbeatingWhile(() => sendPending(range, result), () => ({ successful: result.successful, failed: result.failed }));
      const errored = (await db("messages")
        .where(inBatch(range))
        .where("status", "errored")
        .groupByRaw(ERRORED_RETRY_CLASS_SQL)
        .select(db.raw(`${ERRORED_RETRY_CLASS_SQL} as class`), db.raw("count(*)::int as n"))) as Array<{ class: TemporaryClass; n: number }>;
      for (const row of errored) result.errored[row.class] = row.n;
      return result;
    },

    /** errored → pending for the batch's messages, before the next round. */
    async retryCampaignBatch(range: BatchRange): Promise<number> {
      return (await db.transaction((trx) => transitionMessagesWhere(trx, "retry", inBatch(range)))).length;
    },

    /**
     * Gives up on the batch's errored messages of these classes: `retries_exhausted`, or
     * `pending_timeout` when the next retry would land after the pending timeout (as for single
     * messages).
     */
    async failErroredCampaignBatch(range: BatchRange, classes: TemporaryClass[], errorCode: typeof FAILURE_CODES.retriesExhausted | typeof FAILURE_CODES.pendingTimeout = FAILURE_CODES.retriesExhausted): Promise<number> {
      return failInBatch(
        range,
        (q) => q.where("status", "errored").whereRaw(`${ERRORED_RETRY_CLASS_SQL} = any(?::text[])`, [classes]),
        errorCode,
        `${errorCode === FAILURE_CODES.pendingTimeout ? "pending timeout" : "retries exhausted"}: ${classes.join(", ")}`,
      );
    },

    /**
     * Refunds the batch's messages the provider never accepted (failed or cancelled unsent): brings
     * the batch's refunds up to their count, so a repeat refunds nothing more. Answers what the batch's messages say now — the counts a retried send round could
     * not know (a worker that died after committing its last chunk leaves nothing to resend).
     */
    async settleCampaignBatch(range: BatchRange): Promise<{ refunded: number; sent: number; failed: number }> {
      const [row] = (await db("messages")
        .where(inBatch(range))
        .select(
          db.raw("count(*) filter (where status in ('failed', 'cancelled') and sent_at is null)::int as unsent"),
          db.raw("count(*) filter (where sent_at is not null)::int as sent"),
          db.raw("count(*) filter (where status = 'failed')::int as failed"),
        )) as Array<{ unsent: number; sent: number; failed: number }>;
      const { unsent, sent, failed } = row ?? { unsent: 0, sent: 0, failed: 0 };
      // Up to the unsent count, not that many more: an abort (the batch's workflow was terminated
      // while an attempt of this activity still ran) may have refunded some of them already.
      await refundUpTo(range, unsent);
      return { refunded: unsent, sent, failed };
    },

    /** successful → failed(receipt_timeout) for the batch; receipts that arrived first stand. */
    async expireCampaignBatchReceipts(range: BatchRange): Promise<number> {
      return failInBatch(range, (q) => q.where("status", "successful"), FAILURE_CODES.receiptTimeout, RECEIPT_TIMEOUT_MESSAGE);
    },

    /**
     * Cancels every unsent message of the campaign (waits for in-flight sends' row locks). A batch
     * still running refunds its cancelled messages when it settles; one that closed without
     * settling (terminated with an earlier workflow of the campaign) never will, so those batches
     * are aborted here, which refunds them.
     */
    async cancelCampaignMessages(campaignId: string): Promise<number> {
      const campaign = await loadCampaign(campaignId);
      const scope = (q: Knex.QueryBuilder) => q.where("campaign_id", campaignId).where("application_id", campaign.application_id);
      // Cancelled ones too: a retry of this activity whose first attempt committed the cancel and
      // then failed (describing the batches) finds nothing unsent, yet still owes those batches' aborts.
      const batchNos = await batchesWithUnsentMessages(db, { campaignId, applicationId: campaign.application_id }, { alsoCancelled: true });
      const changed = await db.transaction((trx) => transitionMessagesWhere(trx, "cancel", scope, {}, { source: "campaign_cancel" }));
      await activities.closedCampaignBatches({ campaignId, applicationId: campaign.application_id, batchNos });
      return changed.length;
    },

    /**
     * Ends the campaign: running/paused → completed (a campaign
     * cancelled meanwhile stays cancelled). Answers the final status. The run of a recurring
     * campaign also ends its parent when that was its last fire (see completeEndedRecurringCampaign).
     */
    async finishCampaign(campaignId: string, outcome: "completed" | "cancelled"): Promise<CampaignStatus> {
      if (outcome === "completed") {
        // A campaign that paused itself after its last page had started still completes; its
        // error_message keeps the reason and drops the call to resume it.
        await db("message_campaigns")
          .where("id", campaignId)
          .whereIn("status", ["running", "paused"])
          .update({
            status: "completed",
            completed_at: db.fn.now(),
            error_message: db.raw("CASE WHEN status = 'paused' AND position(? in coalesce(error_message, '')) > 0 THEN split_part(error_message, ?, 1) || ? ELSE error_message END", [PAUSED_FOR_CREDENTIALS, PAUSED_FOR_CREDENTIALS, "; the pushes sent meanwhile failed (provider_auth_failed)."]),
          });
      } else {
        // A campaign the reconciler failed (its previous workflow was terminated) stays failed.
        await db("message_campaigns").where("id", campaignId).whereNotIn("status", ENDED_CAMPAIGN_STATUSES).update({ status: "cancelled", cancelled_at: db.fn.now() });
      }
      const campaign = await loadCampaign(campaignId);
      if (campaign.parent_campaign_id !== null) {
        try {
          await completeEndedRecurringCampaign(deps, campaign.parent_campaign_id, campaign.run_key ?? undefined);
        } catch (error) {
          // Not this run's business to fail over: the reconciler's pass ends the parent instead.
          deps.logger.warn({ err: error, campaign_id: campaign.parent_campaign_id, run_id: campaignId }, "could not check whether the recurring campaign has ended; the reconciler will");
        }
      }
      return campaign.status;
    },

    /**
     * A batch's usual life in one activity: create its messages, debit them, send them once, and
     * settle when nothing is left to retry. Each step is the idempotent activity of the same name,
     * so a retry (worker died) redoes nothing that committed. Four activities per batch were most
     * of the batch's Temporal events; the workflow only takes over for retry rounds on timers.
     */
    async startCampaignBatch(range: BatchRange): Promise<BatchStart> {
      // Create and debit heartbeat too: a slow create must not look like a dead worker and get a
      // twin attempt (the send round below heartbeats on its own).
      const { messages, proceed } = await heartbeatingWhile(async () => {
        const { messages } = await activities.createCampaignBatch(range);
        return { messages, proceed: messages > 0 && (await activities.debitCampaignBatch(range)).proceed };
      });
      if (messages === 0) return { messages, proceed: false, round: null, settled: null };
      // Not sending (cancelled, or out of quota) still settles: an earlier attempt of this activity
      // may have debited the batch and sent part of it before the cancel, and what it sent awaits
      // its receipts while the rest is refunded (a batch never debited refunds nothing).
      if (!proceed) return { messages, proceed, round: null, settled: await activities.settleCampaignBatch(range) };
      const round = await activities.sendCampaignBatch(range);
      const retryLeft = Object.values(round.errored).some((n) => (n ?? 0) > 0);
      return { messages, proceed, round, settled: retryLeft ? null : await activities.settleCampaignBatch(range) };
    },
  };
  return activities;
}