import { ApplicationFailure, Context, heartbeat } from "@temporalio/activity";
import type { Knex } from "knex";
import type { Deps } from "../src/deps";

/** What an erasure removed, recorded on the erasure request (counts only: nothing that identifies the user). */
export interface ErasureResult {
  users: number;
  subscriptions: number;
  messages_scrubbed: number;
  subscription_events_scrubbed: number;
}

/** Status of an erasure request as the workflow sees it when it starts. */
export type ErasureRequestStatus = "pending" | "running" | "completed" | "failed";

/** Messages scrubbed per transaction: keeps row locks and WAL bursts small on the largest table. */
export const ERASURE_MESSAGE_BATCH = 1000;

interface ErasureRequestRow {
  id: string;
  application_id: string;
  external_id: string;
  status: ErasureRequestStatus;
  result: Partial<ErasureResult> | null;
}

/** Who is being erased, resolved afresh in every transaction (the user may be gone on a retry). */
interface Target {
  applicationId: string;
  externalId: string;
  userId: string | null;
  subscriptionIds: string[];
}

/**
 * The personal content of a message, erased; everything else (status, channel, provider, error
 * code, attempts, timestamps, campaign and template references) stays so counts and delivery
 * statistics remain correct. `options` and `error_details` can carry rendered variables or provider
 * echoes of the payload/token (an errored message keeps only its retry class, code and Retry-After), the idempotency key is chosen by the tenant (often "welcome-<user>"),
 * the request hash is derived from the content, and the provider message id links to provider-side
 * logs: all go.
 */
function scrubbedMessageColumns(trx: Knex.Transaction): Record<string, unknown> {
  return {
    title: null,
    body: null,
    data: trx.raw("'{}'::jsonb"),
    options: trx.raw("'{}'::jsonb"),
    error_message: null,
    // An errored message keeps how it is retried (class, provider code, Retry-After: nothing of the
    // user's); its batch retries it by class.
    error_details: trx.raw(
      `CASE WHEN status = 'errored' THEN jsonb_strip_nulls(jsonb_build_object('class', error_details->'class', 'code', error_details->'code', 'retry_after_ms', error_details->'retry_after_ms')) ELSE '{}'::jsonb END`,
    ),
    idempotency_key: null,
    // A hash of the request (content, external id): derived from what is erased, and it would
    // confirm a guess of it.
    request_hash: null,
    provider_message_id: null,
    user_id: null,
    subscription_id: null,
  };
}

async function lockRequest(trx: Knex.Transaction, requestId: string): Promise<ErasureRequestRow> {
  const request = await trx("erasure_requests").where({ id: requestId }).forUpdate().first<ErasureRequestRow | undefined>("id", "application_id", "external_id", "status", "result");
  // Not retryable: no amount of retrying makes a missing request appear.
  if (!request) throw ApplicationFailure.nonRetryable(`erasure request ${requestId} not found`, "ErasureRequestNotFound");
  return request;
}

async function resolveTarget(trx: Knex.Transaction, request: ErasureRequestRow, lock: boolean): Promise<Target> {
  const userQuery = trx("users").where({ application_id: request.application_id, external_id: request.external_id });
  const user = await (lock ? userQuery.forUpdate() : userQuery).first<{ id: string } | undefined>("id");
  let subscriptionIds: string[] = [];
  if (user) {
    // Locked in id order, the same order identify and logout use, so concurrent calls cannot deadlock.
    const subscriptionQuery = trx("subscriptions").where({ application_id: request.application_id, user_id: user.id }).orderBy("id");
    subscriptionIds = (await (lock ? subscriptionQuery.forUpdate() : subscriptionQuery).select<{ id: string }[]>("id")).map((s) => s.id);
  }
  return { applicationId: request.application_id, externalId: request.external_id, userId: user?.id ?? null, subscriptionIds };
}

/**
 * The user's messages: those addressed to the user, plus anonymous ones (no user) sent to the
 * user's devices before they were identified. Messages another user received on a device this user
 * now owns are that other user's history and are left alone.
 */
function userMessages(trx: Knex.Transaction, target: Target): Knex.QueryBuilder {
  return trx("messages")
    .where("application_id", target.applicationId)
    .where((q) => {
      if (target.userId) q.where("user_id", target.userId);
      if (target.subscriptionIds.length > 0) q.orWhere((anon) => anon.whereNull("user_id").whereIn("subscription_id", target.subscriptionIds));
      // Nothing to match: keep the predicate valid but empty.
      if (!target.userId && target.subscriptionIds.length === 0) q.whereRaw("false");
    });
}

/** Scrubs up to `limit` of the user's messages and their events' data; returns how many. */
async function scrubMessageBatch(trx: Knex.Transaction, target: Target, limit?: number): Promise<number> {
  const select = userMessages(trx, target);
  const ids = (await (limit ? select.limit(limit) : select).pluck<string[]>("id")) as string[];
  if (ids.length === 0) return 0;
  await trx("messages").whereIn("id", ids).update(scrubbedMessageColumns(trx));
  // Event rows keep type, statuses and time (the counts); their data may hold provider responses.
  await trx("message_events").whereIn("message_id", ids).update({ data: trx.raw("'{}'::jsonb") });
  return ids.length;
}

/**
 * Subscription events that stay (they belong to devices that are not deleted: e.g. one the user
 * logged out of) but mention the user: drop just the keys naming them and the user_id reference.
 * Events of the user's own subscriptions are deleted with those subscriptions (FK cascade).
 */
async function scrubForeignSubscriptionEvents(trx: Knex.Transaction, target: Target): Promise<number> {
  return trx("subscription_events")
    .where("application_id", target.applicationId)
    .whereNotIn("subscription_id", target.subscriptionIds)
    .where((q) => {
      // An event naming the user's external_id always carries their user id too (user_id of a
      // link/unlink, previous_user_id beside previous_external_id), and both are indexed: this
      // reads the user's events, not every event of the tenant under the erasure's locks. Without
      // a user row (erased before), only the external id can find what is left: a scan, rarely.
      if (target.userId) q.where("user_id", target.userId).orWhereRaw("data->>'previous_user_id' = ?", [target.userId]);
      else q.whereRaw("data->>'external_id' = ?", [target.externalId]).orWhereRaw("data->>'previous_external_id' = ?", [target.externalId]);
    })
    .update({
      user_id: trx.raw("CASE WHEN user_id = ?::uuid THEN NULL ELSE user_id END", [target.userId]),
      data: trx.raw(
        `data - array_remove(ARRAY[
           CASE WHEN data->>'external_id' = ? THEN 'external_id' END,
           CASE WHEN data->>'previous_external_id' = ? THEN 'previous_external_id' END,
           CASE WHEN data->>'previous_user_id' = ? THEN 'previous_user_id' END
         ]::text[], NULL)`,
        [target.externalId, target.externalId, target.userId],
      ),
    });
}

/**
 * The application's campaigns (and runs) whose targeting names `externalId` in `external_ids`:
 * the shape `message_campaigns_targeted_external_ids_idx` serves.
 */
export function campaignsNaming(db: Knex, applicationId: string, externalId: string): Knex.QueryBuilder {
  // A jsonb literal, not jsonb_build_array(?): the planner can only cost a GIN scan for a value it
  // knows when planning, and otherwise walks all of the application's campaigns instead.
  return db("message_campaigns").where("application_id", applicationId).whereRaw("targeting_criteria->'external_ids' @> ?::jsonb", [JSON.stringify([externalId])]);
}

/**
 * Campaigns that target the user by external id keep the list (a scheduled or recurring one still
 * targets the others), with the erased id replaced by `erased:<request id>`: no user has it, so
 * it matches nobody, and the list never becomes empty (which would fail to parse, or target all).
 * Their request fingerprint goes too: it hashed the body with the id, so it would confirm a guess.
 */
async function removeFromCampaignTargeting(trx: Knex.Transaction, request: ErasureRequestRow): Promise<number> {
  return campaignsNaming(trx, request.application_id, request.external_id).update({
    request_hash: null,
    targeting_criteria: trx.raw(
      `jsonb_set(targeting_criteria, '{external_ids}',
         (SELECT jsonb_agg(CASE WHEN e = to_jsonb(?::text) THEN to_jsonb(?::text) ELSE e END ORDER BY n)
            FROM jsonb_array_elements(targeting_criteria->'external_ids') WITH ORDINALITY AS x(e, n)))`,
      [request.external_id, `erased:${request.id}`],
    ),
  });
}

/**
 * Activities of the GDPR erasure workflow (REF-001 §3.4). Each is idempotent and keeps its progress
 * in the erasure_requests row, so a retry after a crash or a worker restart is harmless. Nothing
 * here logs or records the external id or any content: only the request id and counts.
 */
export function createUserErasureActivities(deps: Deps) {
  return {
    /** Marks the request running (visible to `GET /users/erasure-requests/:id`); returns its status before. */
    async markErasureRunning(requestId: string): Promise<ErasureRequestStatus> {
      return deps.db.transaction(async (trx) => {
        const request = await lockRequest(trx, requestId);
        if (request.status !== "completed") await trx("erasure_requests").where({ id: requestId }).update({ status: "running" });
        return request.status;
      });
    },

    /**
     * Erases the personal content of the user's messages in batches (one transaction each, progress
     * counted on the request), heartbeating between batches so a long erasure is not mistaken for a
     * hung one. Rows, statuses and timestamps stay.
     */
    async scrubUserMessages(requestId: string): Promise<number> {
      const cancellation = Context.current().cancellationSignal;
      let total = 0;
      for (;;) {
        // A worker shutting down stops between batches (each commits with its progress): carrying
        // on held the shutdown until the platform's SIGKILL, which rolled the batch back anyway.
        if (cancellation.aborted) throw ApplicationFailure.retryable("the erasure stopped between batches (worker shutting down or attempt cancelled); the retry goes on from there", "ErasureStopped");
        const scrubbed = await deps.db.transaction(async (trx) => {
          const request = await lockRequest(trx, requestId);
          if (request.status === "completed") return 0;
          const count = await scrubMessageBatch(trx, await resolveTarget(trx, request, false), ERASURE_MESSAGE_BATCH);
          if (count > 0) {
            await trx("erasure_requests")
              .where({ id: requestId })
              .update({ result: trx.raw("result || jsonb_build_object('messages_scrubbed', coalesce((result->>'messages_scrubbed')::int, 0) + ?::int)", [count]) });
          }
          return count;
        });
        total += scrubbed;
        heartbeat({ scrubbed: total });
        if (scrubbed < ERASURE_MESSAGE_BATCH) return total;
      }
    },

    /**
     * The final, atomic step: scrubs messages created since the batches ran, removes the user from
     * events that outlive them and from campaigns' external_ids, deletes the user's subscriptions
     * (device tokens, tags, device info; their events cascade) and the user row, and records the
     * counts. The request keeps the tenant's pseudonymous external_id as evidence of the erasure
     * (docs/data-model.md) but no user id.
     */
    async eraseUserData(requestId: string): Promise<ErasureResult> {
      const result = await deps.db.transaction(async (trx) => {
        const request = await lockRequest(trx, requestId);
        if (request.status === "completed") return request.result as ErasureResult;
        // Campaign rows before the user's subscriptions, the order a campaign batch create locks them in.
        await removeFromCampaignTargeting(trx, request);
        // The user's remaining messages before the user and subscriptions: a send locks its
        // messages and then, on a dead token, the subscription, so the other order deadlocks with a
        // send in flight, and a send chosen as the victim rolls back sends the provider accepted.
        // Messages on the user's devices addressed to someone else are locked too: deleting the
        // subscriptions below sets their subscription_id to null, which locks them as well.
        const unlocked = await resolveTarget(trx, request, false);
        await trx("messages")
          .where("application_id", unlocked.applicationId)
          .where((q) => {
            q.whereIn("id", userMessages(trx, unlocked).select("id"));
            if (unlocked.subscriptionIds.length > 0) q.orWhereIn("subscription_id", unlocked.subscriptionIds);
          })
          .orderBy("id")
          .forUpdate()
          .pluck("id");
        const target = await resolveTarget(trx, request, true);
        const lateMessages = await scrubMessageBatch(trx, target);
        const eventsScrubbed = await scrubForeignSubscriptionEvents(trx, target);
        const subscriptions =
          target.subscriptionIds.length > 0
            ? await trx("subscriptions").where("application_id", target.applicationId).whereIn("id", target.subscriptionIds).delete()
            : 0;
        const users = target.userId ? await trx("users").where({ application_id: target.applicationId, id: target.userId }).delete() : 0;
        const erased: ErasureResult = {
          users,
          subscriptions,
          messages_scrubbed: (request.result?.messages_scrubbed ?? 0) + lateMessages,
          subscription_events_scrubbed: eventsScrubbed,
        };
        await trx("erasure_requests")
          .where({ id: requestId })
          .update({ status: "completed", completed_at: trx.fn.now(), user_id: null, result: JSON.stringify(erased) });
        return erased;
      });
      deps.logger.info({ erasure_request_id: requestId, ...result }, "user erasure completed");
      return result;
    },
  };
}
