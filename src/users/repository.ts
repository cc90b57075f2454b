import type { Knex } from "knex";
import { newId } from "../db/ids";
import { ApiError, notFound } from "../http/errors";
import { paginate, type Pagination } from "../http/pagination";
import { inTransaction } from "../db/transactions";

/** A user as the users routes read it. */
export interface UserRow {
  id: string;
  application_id: string;
  external_id: string;
  properties: Record<string, unknown>;
  created_at: Date;
}

/** The user with this external id in this application, or undefined (other tenants' users included). */
export async function findUserByExternalId(db: Knex | Knex.Transaction, applicationId: string, externalId: string): Promise<UserRow | undefined> {
  return db("users").where({ application_id: applicationId, external_id: externalId }).first<UserRow | undefined>("id", "application_id", "external_id", "properties", "created_at");
}

/** Unique ids in first-seen order: `subscriptions` plus the `subscription_id` shorthand. */
export function collectSubscriptionIds(subscriptions: readonly string[] | undefined, subscriptionId: string | undefined): string[] {
  const ids = [...(subscriptions ?? []), ...(subscriptionId ? [subscriptionId] : [])].map((id) => id.toLowerCase());
  return [...new Set(ids)];
}

interface SubscriptionLink {
  id: string;
  user_id: string | null;
}

/**
 * Locks the named subscriptions of this application in id order (the order every users-domain
 * writer uses) and fails with a 404 naming the first id that is missing, archived or another
 * tenant's, so nothing is written for a partly invalid request.
 */
async function lockSubscriptions(trx: Knex.Transaction, applicationId: string, ids: readonly string[]): Promise<SubscriptionLink[]> {
  if (ids.length === 0) return [];
  const rows = await trx("subscriptions")
    .where("application_id", applicationId)
    .whereIn("id", ids)
    .whereNull("archived_at")
    .orderBy("id")
    .forUpdate()
    .select<SubscriptionLink[]>("id", "user_id");
  const found = new Set(rows.map((r) => r.id));
  const missing = ids.filter((id) => !found.has(id));
  if (missing.length > 0) {
    const error = notFound("subscription", missing[0]!);
    error.details.missing = missing;
    throw error;
  }
  return rows;
}

/** External ids of the given users of this application, by user id. */
async function externalIdsOf(trx: Knex.Transaction, applicationId: string, userIds: readonly string[]): Promise<Map<string, string>> {
  if (userIds.length === 0) return new Map();
  const rows = await trx("users").where("application_id", applicationId).whereIn("id", userIds).select<{ id: string; external_id: string }[]>("id", "external_id");
  return new Map(rows.map((r) => [r.id, r.external_id]));
}

/** Input of {@link identifyUser}. */
export interface IdentifyInput {
  externalId: string;
  subscriptionIds: readonly string[];
  properties?: Record<string, unknown>;
  /**
   * Link only subscriptions linked to this user now (null: anonymous ones); a subscription linked
   * to someone else is left alone (a late or retried identify must not undo a newer login).
   */
  previousExternalId?: string | null;
}

/** Outcome of {@link identifyUser}. */
export interface IdentifyOutcome {
  user: UserRow;
  created: boolean;
  /** Subscriptions that were not linked to this user before (each got a `user_linked` event). */
  linked: string[];
  /** Subscriptions left alone because the guard did not match their current user. */
  notLinked: string[];
}

/** Most keys a user's merged properties may hold. */
export const MAX_USER_PROPERTIES = 200;
/** Largest a user's merged properties may be, as JSON characters. */
export const MAX_USER_PROPERTIES_CHARS = 64 * 1024;

/**
 * Refuses merged properties past the bounds (the transaction then rolls back): each identify
 * merges into the stored object, so without a bound on the result, repeated identifies with new
 * keys grow one row without end, and every later identify rewrites and returns all of it.
 */
function assertPropertiesWithinBounds(properties: unknown, before: unknown): void {
  const size = (value: unknown) => ({ keys: Object.keys((value ?? {}) as object).length, chars: JSON.stringify(value ?? {}).length });
  const { keys, chars } = size(properties);
  const old = size(before);
  // Only growth past a bound is refused: a user stored over it before the bound existed (or one
  // shrinking back under it by replacing large values) can still identify.
  if ((keys > MAX_USER_PROPERTIES && keys > old.keys) || (chars > MAX_USER_PROPERTIES_CHARS && chars > old.chars)) {
    throw new ApiError("validation_error", "The request body failed validation", {
      in: "body",
      fields: { properties: `a user's properties hold at most ${MAX_USER_PROPERTIES} keys and ${MAX_USER_PROPERTIES_CHARS} characters of JSON once merged; this would make ${keys} keys, ${chars} characters` },
    });
  }
}

/**
 * Finds or creates the user (application_id, external_id) and links the subscriptions to them, in
 * one transaction (REF-001 §3.1, SEQ-001 §3.2). The upsert makes concurrent identifies of the same
 * external id converge on one row instead of failing on the unique key. A subscription linked to
 * another user is moved, and its `user_linked` event names the previous user.
 */
export async function identifyUser(db: Knex, applicationId: string, input: IdentifyInput): Promise<IdentifyOutcome> {
  return inTransaction(db, async (trx) => {
    const candidateId = newId();
    // The stored properties, to tell growth from what was there (only when some are sent: an
    // identify without properties changes none and is never refused for them).
    const before = input.properties
      ? ((await trx("users").where({ application_id: applicationId, external_id: input.externalId }).forNoKeyUpdate().first("properties")) as { properties: unknown } | undefined)?.properties
      : undefined;
    const [user] = await trx("users")
      .insert({
        id: candidateId,
        application_id: applicationId,
        external_id: input.externalId,
        properties: JSON.stringify(input.properties ?? {}),
        last_active_at: trx.fn.now(),
      })
      .onConflict(["application_id", "external_id"])
      .merge({
        last_active_at: trx.raw("excluded.last_active_at"),
        properties: trx.raw("users.properties || excluded.properties"),
      })
      .returning<UserRow[]>(["id", "application_id", "external_id", "properties", "created_at"]);
    if (!user) throw new Error("user upsert returned no row");
    if (input.properties) assertPropertiesWithinBounds(user.properties, before);

    const subscriptions = await lockSubscriptions(trx, applicationId, input.subscriptionIds);
    const others = subscriptions.filter((s) => s.user_id !== user.id);
    const previousExternalIds = await externalIdsOf(
      trx,
      applicationId,
      others.flatMap((s) => (s.user_id ? [s.user_id] : [])),
    );
    const guarded = (s: (typeof others)[number]): boolean =>
      input.previousExternalId === undefined || (s.user_id === null ? input.previousExternalId === null : previousExternalIds.get(s.user_id) === input.previousExternalId);
    const toLink = others.filter(guarded);
    const notLinked = others.filter((s) => !guarded(s)).map((s) => s.id);
    if (toLink.length > 0) {
      await trx("subscriptions")
        .where("application_id", applicationId)
        .whereIn(
          "id",
          toLink.map((s) => s.id),
        )
        .update({ user_id: user.id });
      await trx("subscription_events").insert(
        toLink.map((s) => ({
          id: newId(),
          application_id: applicationId,
          subscription_id: s.id,
          user_id: user.id,
          event_type: "user_linked",
          source: "api",
          reason: s.user_id ? "user_identify_relink" : "user_identify",
          data: JSON.stringify({
            external_id: user.external_id,
            ...(s.user_id ? { previous_user_id: s.user_id, previous_external_id: previousExternalIds.get(s.user_id) ?? null } : {}),
          }),
        })),
      );
    }
    return { user, created: user.id === candidateId, linked: toLink.map((s) => s.id), notLinked };
  });
}

/** Input of {@link logoutSubscriptions}. */
export interface LogoutInput {
  subscriptionIds: readonly string[];
  /** Only unlink subscriptions linked to this user (a stale logout must not undo a newer login). */
  externalId?: string;
}

/**
 * Unlinks the subscriptions from their users (REF-001 §3.2, SEQ-001 §3.4): the subscription keeps its
 * status and becomes anonymous, and each unlink writes a `user_unlinked` event. Subscriptions that are
 * already anonymous (or, with `externalId`, linked to someone else) are left alone, so a repeated
 * logout is harmless. Returns the ids actually unlinked.
 */
export async function logoutSubscriptions(db: Knex, applicationId: string, input: LogoutInput): Promise<string[]> {
  return inTransaction(db, async (trx) => {
    let onlyUserId: string | undefined;
    if (input.externalId !== undefined) {
      const user = await trx("users").where({ application_id: applicationId, external_id: input.externalId }).forKeyShare().first<{ id: string } | undefined>("id");
      if (!user) throw notFound("user", input.externalId);
      onlyUserId = user.id;
    }
    // Lock order user → subscriptions, as identify and the erasure do: take a key-share lock on the
    // users we are about to reference in events before locking the subscriptions. Key-share only
    // conflicts with deleting the user, i.e. with a running erasure, which then goes first or waits.
    const snapshot = (await trx("subscriptions").where("application_id", applicationId).whereIn("id", input.subscriptionIds).pluck("user_id")) as Array<string | null>;
    const userIds = [...new Set(snapshot)].filter((id): id is string => id !== null && (onlyUserId === undefined || id === onlyUserId)).sort();
    if (userIds.length > 0) await trx("users").where("application_id", applicationId).whereIn("id", userIds).orderBy("id").forKeyShare().select("id");

    const subscriptions = await lockSubscriptions(trx, applicationId, input.subscriptionIds);
    const toUnlink = subscriptions.filter((s): s is SubscriptionLink & { user_id: string } => s.user_id !== null && (onlyUserId === undefined || s.user_id === onlyUserId));
    if (toUnlink.length === 0) return [];
    const externalIds = await externalIdsOf(
      trx,
      applicationId,
      toUnlink.map((s) => s.user_id),
    );
    await trx("subscriptions")
      .where("application_id", applicationId)
      .whereIn(
        "id",
        toUnlink.map((s) => s.id),
      )
      .update({ user_id: null });
    await trx("subscription_events").insert(
      toUnlink.map((s) => ({
        id: newId(),
        application_id: applicationId,
        subscription_id: s.id,
        user_id: s.user_id,
        event_type: "user_unlinked",
        source: "api",
        reason: "user_logout",
        data: JSON.stringify({ external_id: externalIds.get(s.user_id) ?? null }),
      })),
    );
    return toUnlink.map((s) => s.id);
  });
}

/** One of a user's subscriptions as listed; deliberately no token columns. */
export interface UserSubscriptionRow {
  id: string;
  subscription_type: string;
  subscription_status: number;
  subscribed_at: Date | null;
  unsubscribed_at: Date | null;
  last_active_at: Date | null;
  created_at: Date;
}

/** A page of the user's (non-archived) subscriptions, oldest first. */
export async function listUserSubscriptions(
  db: Knex,
  applicationId: string,
  userId: string,
  page: number,
  perPage: number,
): Promise<{ rows: UserSubscriptionRow[]; pagination: Pagination }> {
  return paginate<UserSubscriptionRow>(
    db("subscriptions")
      .where({ application_id: applicationId, user_id: userId })
      .whereNull("archived_at")
      .select("id", "subscription_type", "subscription_status", "subscribed_at", "unsubscribed_at", "last_active_at", "created_at"),
    page,
    perPage,
    [
      { column: "created_at", order: "asc" },
      { column: "id", order: "asc" },
    ],
  );
}

/** An erasure request row (erasure_requests). */
export interface ErasureRequestRow {
  id: string;
  application_id: string;
  external_id: string;
  user_id: string | null;
  status: "pending" | "running" | "completed" | "failed";
  workflow_id: string | null;
  requested_at: Date;
  completed_at: Date | null;
  result: Record<string, unknown>;
}

/**
 * Records a GDPR erasure request for (application, external_id), or returns the one already pending
 * or running for them: DELETE is idempotent while a request is in flight, which is also how a
 * request whose workflow could not be started is resumed (the client retries the DELETE). The user
 * row is locked so concurrent DELETEs cannot both insert. With no such user, the request that
 * erased them in the last 24 hours answers (a retried DELETE); undefined when there is none (→ 404).
 */
export async function createOrReuseErasureRequest(
  db: Knex,
  applicationId: string,
  externalId: string,
): Promise<{ request: ErasureRequestRow; reused: boolean } | undefined> {
  return inTransaction(db, async (trx) => {
    // NO KEY UPDATE: serialises DELETEs of this user without blocking foreign-key checks of writers
    // that merely reference the user (identify/logout events).
    const user = await trx("users").where({ application_id: applicationId, external_id: externalId }).forNoKeyUpdate().first<{ id: string } | undefined>("id");
    const inFlight = await trx("erasure_requests")
      .where({ application_id: applicationId, external_id: externalId })
      .whereIn("status", ["pending", "running"])
      .orderBy("requested_at", "desc")
      .first<ErasureRequestRow | undefined>();
    if (inFlight) return { request: inFlight, reused: true };
    if (!user) {
      // A DELETE retried after its 202 was lost finds the erasure already done (it takes seconds):
      // the same request answers, so the client still learns its id, instead of a 404.
      const recent = await trx("erasure_requests")
        .where({ application_id: applicationId, external_id: externalId, status: "completed" })
        .where("completed_at", ">", trx.raw("now() - interval '24 hours'"))
        .orderBy("completed_at", "desc")
        .first<ErasureRequestRow | undefined>();
      return recent ? { request: recent, reused: true } : undefined;
    }
    const [request] = await trx("erasure_requests")
      .insert({ id: newId(), application_id: applicationId, external_id: externalId, user_id: user.id, status: "pending" })
      .returning<ErasureRequestRow[]>("*");
    if (!request) throw new Error("erasure request insert returned no row");
    return { request, reused: false };
  });
}

/** Records the workflow that carries out the request, once it has been started. */
export async function recordErasureWorkflow(db: Knex, requestId: string, workflowId: string): Promise<void> {
  await db("erasure_requests").where({ id: requestId }).whereNull("workflow_id").update({ workflow_id: workflowId });
}

/** An erasure request of this application, or undefined (other tenants' requests included). */
export async function findErasureRequest(db: Knex, applicationId: string, id: string): Promise<ErasureRequestRow | undefined> {
  return db("erasure_requests").where({ application_id: applicationId, id }).first<ErasureRequestRow | undefined>();
}
