/**
 * Data access for subscriptions. Every query filters by `application_id`, every change that moves a
 * status writes a `subscription_events` row in the same transaction, and plain tokens exist only
 * between validation and `secrets.encrypt` / `secrets.hash` (never stored, returned or logged).
 */
import type { Knex } from "knex";
import { inTransaction } from "../db/transactions";
import type { Deps } from "../deps";
import { newId } from "../db/ids";
import { ApiError, notFound } from "../http/errors";
import { paginate, type Pagination } from "../http/pagination";
import { MAX_TAGS, type DeviceInfoInput, type SubscriptionType, type SubscriptionViewData } from "./schemas";
import { nextStatusFor, statusClass, SubscriptionStatus, type StatusAction, type SubscriptionEventType } from "./status";
import { maskToken, normalizeToken } from "./tokens";
import { deviceTokenContext } from "./device-token";
import { iso } from "../http/format";

/** A `subscriptions` row as node-pg returns it. */
export interface SubscriptionRow {
  id: string;
  application_id: string;
  user_id: string | null;
  subscription_type: SubscriptionType;
  token_ciphertext: string | null;
  token_hash: string | null;
  subscription_status: number;
  subscribed_at: Date | null;
  unsubscribed_at: Date | null;
  tags: Record<string, string>;
  timezone: string | null;
  country: string | null;
  language: string | null;
  device_model: string | null;
  device_os: string | null;
  os_version: string | null;
  app_version: string | null;
  sdk_version: string | null;
  test_type: number | null;
  last_active_at: Date | null;
  total_messages_received: number;
  total_messages_converted: number;
  archived_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

/** A subscription row joined with its user's `external_id` (what the API calls `user_id`). */
export interface SubscriptionWithUserRow extends SubscriptionRow {
  user_external_id: string | null;
}

/** Who changed a subscription, recorded in `subscription_events.source`. */
export type ChangeSource = "api" | "provider" | "system";

/** The partial unique index `subscriptions_token_hash_key`, as an ON CONFLICT target. */
const TOKEN_CONFLICT_TARGET = "(application_id, subscription_type, token_hash) where token_hash is not null";
const TOKEN_UNIQUE_CONSTRAINT = "subscriptions_token_hash_key";

// ------------------------------------------------------------------ reads

/** Locks a live subscription for the rest of the transaction, or throws the tenant-blind 404. */
async function lockSubscription(trx: Knex.Transaction, applicationId: string, id: string): Promise<SubscriptionRow> {
  const row = await trx<SubscriptionRow>("subscriptions").where({ application_id: applicationId, id }).whereNull("archived_at").forUpdate().first();
  if (!row) throw notFound("subscription", id);
  return row;
}

function selectWithUser(db: Knex, applicationId: string): Knex.QueryBuilder {
  return db("subscriptions as s")
    .leftJoin("users as u", function joinUser() {
      this.on("u.id", "=", "s.user_id").andOn("u.application_id", "=", "s.application_id");
    })
    .where("s.application_id", applicationId)
    .whereNull("s.archived_at")
    .select("s.*", "u.external_id as user_external_id");
}


/** Maps a row to the API view (REF-001 §2.2); the token is shown masked only. */
export function toSubscriptionView(deps: Pick<Deps, "secrets" | "logger">, row: SubscriptionWithUserRow): SubscriptionViewData {
  let tokenMasked: string | null = null;
  if (row.token_ciphertext) {
    try {
      tokenMasked = maskToken(row.subscription_type, deps.secrets.decrypt(row.token_ciphertext, deviceTokenContext(row.application_id)));
    } catch (error) {
      // A token sealed under another key must not make the whole subscription unreadable; say so once per read.
      deps.logger.warn({ subscription_id: row.id, err: { message: (error as Error).message } }, "subscription token could not be decrypted");
    }
  }
  return {
    id: row.id,
    type: row.subscription_type,
    user_id: row.user_external_id,
    subscription_status: row.subscription_status,
    token_masked: tokenMasked,
    device_info: {
      device_model: row.device_model,
      device_os: row.device_os,
      device_language: row.language,
      app_version: row.app_version,
      sdk_version: row.sdk_version,
      country_code: row.country,
      test_type: row.test_type,
    },
    tags: row.tags ?? {},
    timezone: row.timezone,
    subscribed_at: iso(row.subscribed_at),
    unsubscribed_at: iso(row.unsubscribed_at),
    last_active_at: iso(row.last_active_at),
    created_at: iso(row.created_at)!,
    updated_at: iso(row.updated_at)!,
  };
}

/** The API view of one subscription of the application, or the tenant-blind 404. */
export async function loadSubscriptionView(deps: Deps, applicationId: string, id: string): Promise<SubscriptionViewData> {
  const row = (await selectWithUser(deps.db, applicationId).where("s.id", id).first()) as SubscriptionWithUserRow | undefined;
  if (!row) throw notFound("subscription", id);
  return toSubscriptionView(deps, row);
}

/** Filters of `GET /subscriptions` (REF-001 §2.8). */
export interface SubscriptionFilters {
  userExternalId?: string;
  type?: SubscriptionType;
  status?: number;
}

/** One page of the application's subscriptions, newest first (ids are UUIDv7, so id order is creation order). */
export async function listSubscriptions(
  deps: Deps,
  applicationId: string,
  filters: SubscriptionFilters,
  page: number,
  perPage: number,
): Promise<{ subscriptions: SubscriptionViewData[]; pagination: Pagination }> {
  const query = selectWithUser(deps.db, applicationId);
  if (filters.userExternalId !== undefined) query.where("u.external_id", filters.userExternalId);
  if (filters.type !== undefined) query.where("s.subscription_type", filters.type);
  // REF-002: any positive value is SUBSCRIBED, so a positive filter asks for the subscribed ones.
  if (filters.status !== undefined) query.where("s.subscription_status", filters.status > 0 ? ">" : "=", filters.status > 0 ? 0 : filters.status);
  // (application_id, id) is a unique index, so this order is served without a sort.
  const { rows, pagination } = await paginate<SubscriptionWithUserRow>(query, page, perPage, [{ column: "s.id", order: "desc" }]);
  return { subscriptions: rows.map((row) => toSubscriptionView(deps, row)), pagination };
}

// ------------------------------------------------------------------ events and status

/** One `subscription_events` row. */
interface SubscriptionEventInput {
  applicationId: string;
  subscriptionId: string;
  userId: string | null;
  eventType: SubscriptionEventType | string;
  fromStatus: number | null;
  toStatus: number | null;
  source: ChangeSource;
  reason?: string | null;
  data?: Record<string, unknown>;
}

async function writeEvent(trx: Knex.Transaction, event: SubscriptionEventInput): Promise<void> {
  await trx("subscription_events").insert({
    id: newId(),
    application_id: event.applicationId,
    subscription_id: event.subscriptionId,
    user_id: event.userId,
    event_type: event.eventType,
    from_status: event.fromStatus,
    to_status: event.toStatus,
    source: event.source,
    reason: event.reason ?? null,
    data: JSON.stringify(event.data ?? {}),
  });
}

/**
 * The status a device's presenting its token again leads to (REF-002 §8.2: a delivery error clears
 * to 1; opt-outs and API blocks stay), with the column changes to get there (none when it stays).
 */
function confirmedTokenStatus(trx: Knex.Transaction, current: number): { status: number; changes: Record<string, unknown> } {
  const transition = nextStatusFor({ type: "token_updated" }, current);
  const status = transition.allowed ? transition.to : current;
  return { status, changes: status === current ? {} : statusColumns(trx, current, status) };
}

/** Column changes for a status move: subscribed_at when it becomes active, unsubscribed_at when it stops or is opted out. */
function statusColumns(trx: Knex.Transaction, from: number, to: number): Record<string, unknown> {
  const changes: Record<string, unknown> = { subscription_status: to };
  if (to > 0 && from <= 0) changes.subscribed_at = trx.fn.now();
  if (to <= 0 && (from > 0 || to === SubscriptionStatus.UNSUBSCRIBED || to === SubscriptionStatus.DISABLED_BY_API)) changes.unsubscribed_at = trx.fn.now();
  return changes;
}

/** Moves a locked row to `to` and records the event (callers skip this when nothing changes). */
async function applyStatus(
  trx: Knex.Transaction,
  row: SubscriptionRow,
  to: number,
  event: { eventType: SubscriptionEventType | string; source: ChangeSource; reason?: string | null; data?: Record<string, unknown> },
): Promise<void> {
  await trx("subscriptions").where({ application_id: row.application_id, id: row.id }).update(statusColumns(trx, row.subscription_status, to));
  await writeEvent(trx, {
    applicationId: row.application_id,
    subscriptionId: row.id,
    userId: row.user_id,
    eventType: event.eventType,
    fromStatus: row.subscription_status,
    toStatus: to,
    source: event.source,
    reason: event.reason,
    data: event.data,
  });
}

/** Input of {@link changeSubscriptionStatus}. */
export interface StatusChangeInput {
  applicationId: string;
  subscriptionId: string;
  /** The REF-002 status to set (e.g. -10 for an unregistered token). */
  toStatus: number;
  /** `subscription_events.event_type`, e.g. `delivery_failed`. */
  eventType: SubscriptionEventType | string;
  /** Free text for the event, e.g. the provider's reason `Unregistered`. */
  reason?: string | null;
  /** Defaults to `provider`, the usual caller. */
  source?: ChangeSource;
  /** Extra event data (e.g. the message id); never put a token here. */
  data?: Record<string, unknown>;
  /**
   * HMAC of the token the provider judged (`token_hash`); when the subscription holds another token
   * by now (the SDK refreshed it during the send), the verdict is about the old one and nothing changes.
   */
  sentTokenHash?: string;
}

/** What {@link changeSubscriptionStatus} did. */
export interface StatusChange {
  subscriptionId: string;
  fromStatus: number;
  toStatus: number;
  changed: boolean;
}

/**
 * Sets a subscription's status and records the event, under a row lock. A delivery-error status
 * (e.g. -10 from the message pipeline) goes through REF-002 §8.2 (`nextStatusFor`): it never
 * replaces a user opt-out or an API disable, and then nothing changes (`changed: false`). Other
 * statuses are applied as given, so callers decide those with `nextStatusFor` first. Returns null
 * when the subscription does not exist in the application. Pass a transaction to join it.
 */
export async function changeSubscriptionStatus(db: Knex | Knex.Transaction, input: StatusChangeInput): Promise<StatusChange | null> {
  const run = async (trx: Knex.Transaction): Promise<StatusChange | null> => {
    const row = await trx<SubscriptionRow>("subscriptions")
      .where({ application_id: input.applicationId, id: input.subscriptionId })
      .whereNull("archived_at")
      .forUpdate()
      .first();
    if (!row) return null;
    if (input.sentTokenHash !== undefined && row.token_hash !== input.sentTokenHash) {
      return { subscriptionId: row.id, fromStatus: row.subscription_status, toStatus: row.subscription_status, changed: false };
    }
    let to = input.toStatus;
    if (statusClass(input.toStatus) === "delivery_error") {
      const transition = nextStatusFor({ type: "delivery_failed", status: input.toStatus }, row.subscription_status);
      to = transition.allowed ? transition.to : row.subscription_status;
    }
    const changed = to !== row.subscription_status;
    if (changed) await applyStatus(trx, row, to, { eventType: input.eventType, source: input.source ?? "provider", reason: input.reason, data: input.data });
    return { subscriptionId: row.id, fromStatus: row.subscription_status, toStatus: to, changed };
  };
  return db.isTransaction ? run(db as Knex.Transaction) : db.transaction(run);
}

/**
 * Applies a disable/enable action through the REF-002 rules. A refused change is
 * `invalid_status_transition` (409) with the reason in the details; an allowed no-op writes nothing.
 */
export async function applyStatusAction(
  deps: Deps,
  applicationId: string,
  id: string,
  action: Extract<StatusAction, { type: "disable" | "enable" }>,
): Promise<void> {
  // Re-run as a deadlock victim: a user's erasure locks the user, then their subscriptions; this
  // locks the subscription, then its event's foreign key share-locks the user.
  await inTransaction(deps.db, async (trx) => {
    const row = await lockSubscription(trx, applicationId, id);
    const transition = nextStatusFor(action, row.subscription_status);
    if (!transition.allowed) {
      throw new ApiError("invalid_status_transition", transition.message, { subscription_status: transition.from, required: transition.refusal });
    }
    if (transition.changed) await applyStatus(trx, row, transition.to, { eventType: transition.eventType, source: "api", reason: action.actor });
  });
}

// ------------------------------------------------------------------ users

/** Finds the user with this external id in the application or creates it; returns `users.id`. */
export async function findOrCreateUser(trx: Knex.Transaction, applicationId: string, externalId: string): Promise<string> {
  // ON CONFLICT … DO UPDATE always returns the row, so concurrent first registrations of a user agree on one id.
  const rows = await trx("users")
    .insert({ id: newId(), application_id: applicationId, external_id: externalId, last_active_at: trx.fn.now() })
    .onConflict(["application_id", "external_id"])
    .merge({ last_active_at: trx.fn.now() })
    .returning<Array<{ id: string }>>("id");
  const row = rows[0];
  if (!row) throw new Error("user upsert returned no row");
  return row.id;
}

// ------------------------------------------------------------------ writes

/** `device_info` (and the top-level timezone) as column changes; absent fields are left alone, null clears. */
function deviceColumns(info: DeviceInfoInput | undefined, timezone: string | null | undefined): Record<string, unknown> {
  const columns: Record<string, unknown> = {};
  const set = (column: string, value: unknown) => {
    if (value !== undefined) columns[column] = value;
  };
  set("device_model", info?.device_model);
  set("device_os", info?.device_os);
  if (info?.device_os !== undefined) set("os_version", osVersionOf(info.device_os));
  set("language", info?.device_language);
  set("app_version", info?.app_version);
  set("sdk_version", info?.sdk_version);
  set("country", info?.country_code);
  set("test_type", info?.test_type);
  set("timezone", timezone !== undefined ? timezone : info?.timezone);
  return columns;
}

/** The version at the end of `device_os` ("iOS 15.4" → "15.4"), kept in `os_version` for targeting. */
export function osVersionOf(deviceOs: string | null): string | null {
  if (!deviceOs) return null;
  return /(\d+(?:\.\d+)*)\s*$/.exec(deviceOs)?.[1] ?? null;
}

/** Merges tags (Map-based, so a `__proto__` key is just a key) and enforces the per-subscription limit. */
function mergeTags(current: Record<string, string>, added: Record<string, string>): Record<string, string> {
  const merged = new Map(Object.entries(current ?? {}));
  for (const [key, value] of Object.entries(added)) merged.set(key, value);
  if (merged.size > MAX_TAGS) {
    throw new ApiError("validation_error", "Too many tags", {
      in: "body",
      fields: { tags: `at most ${MAX_TAGS} tags per subscription; this would make ${merged.size}` },
    });
  }
  return Object.fromEntries(merged);
}

function isTokenConflict(error: unknown): boolean {
  const pgError = error as { code?: string; constraint?: string } | null;
  return pgError?.code === "23505" && pgError.constraint === TOKEN_UNIQUE_CONSTRAINT;
}

/** Validates and normalises a token for a type, or throws `invalid_token` (the token itself is never echoed). */
export function validTokenOrThrow(type: SubscriptionType, raw: string): string {
  const result = normalizeToken(type, raw);
  if (!result.ok) throw new ApiError("invalid_token", `The token is not a valid ${type} token`, { field: "token", type, rule: result.reason });
  return result.token;
}

/** What `POST /subscriptions` asks for, validated. */
export interface RegisterSubscriptionInput {
  type: SubscriptionType;
  /** Normalised plain token (from {@link validTokenOrThrow}). */
  token: string;
  userExternalId?: string | null;
  deviceInfo?: DeviceInfoInput;
  timezone?: string;
  tags?: Record<string, string>;
}

/**
 * Registers a subscription, idempotently per (application, type, token): the first call creates it
 * (status 1, `subscribed` event); later calls with the same token — the SDK re-registers on every
 * launch — update device info, timezone, tags and the user link of the existing row and leave its
 * status alone, so a re-registration can never undo an opt-out (REF-002 §8.2). Concurrent identical
 * calls meet on the partial unique index (ON CONFLICT DO NOTHING) and all see one row.
 */
export async function registerSubscription(deps: Deps, applicationId: string, input: RegisterSubscriptionInput): Promise<{ id: string; created: boolean }> {
  const tokenHash = deps.secrets.hash(input.token);
  const device = deviceColumns(input.deviceInfo, input.timezone);
  // Re-run as a deadlock victim against a user's erasure (see applyStatusAction).
  return inTransaction(deps.db, async (trx) => {
    const userId = input.userExternalId ? await findOrCreateUser(trx, applicationId, input.userExternalId) : null;
    // A conflicting row can vanish between the insert and the lookup (deleted by erasure); try again then.
    for (let attempt = 0; attempt < 3; attempt++) {
      const id = newId();
      const inserted = await trx("subscriptions")
        .insert({
          id,
          application_id: applicationId,
          user_id: userId,
          subscription_type: input.type,
          token_ciphertext: deps.secrets.encrypt(input.token, deviceTokenContext(applicationId)),
          token_hash: tokenHash,
          subscription_status: SubscriptionStatus.SUBSCRIBED,
          subscribed_at: trx.fn.now(),
          last_active_at: trx.fn.now(),
          tags: JSON.stringify(mergeTags({}, input.tags ?? {})),
          ...device,
        })
        .onConflict(trx.raw(TOKEN_CONFLICT_TARGET))
        .ignore()
        .returning<Array<{ id: string }>>("id");
      if (inserted.length > 0) {
        await writeEvent(trx, {
          applicationId,
          subscriptionId: id,
          userId,
          eventType: "subscribed",
          fromStatus: null,
          toStatus: SubscriptionStatus.SUBSCRIBED,
          source: "api",
          data: { type: input.type },
        });
        return { id, created: true };
      }

      const existing = await trx<SubscriptionRow>("subscriptions")
        .where({ application_id: applicationId, subscription_type: input.type, token_hash: tokenHash })
        .forUpdate()
        .first();
      if (!existing) continue;
      // A token sealed before binding (v1) is sealed again, bound to its application.
      const resealed = deps.secrets.resealUnbound(existing.token_ciphertext, input.token, deviceTokenContext(applicationId));
      return { id: existing.id, created: await reRegister(trx, existing, userId, { ...device, ...(resealed ? { token_ciphertext: resealed } : {}) }, input.tags) };
    }
    throw new Error("subscription registration did not settle after 3 attempts");
  });
}

/** Updates an existing row for a repeated registration; returns true when an archived row was revived (a new subscription to the caller). */
async function reRegister(
  trx: Knex.Transaction,
  existing: SubscriptionRow,
  userId: string | null,
  device: Record<string, unknown>,
  tags: Record<string, string> | undefined,
): Promise<boolean> {
  const where = { application_id: existing.application_id, id: existing.id };
  if (existing.archived_at) {
    // Archived means deleted for the API: registering the token again starts a fresh subscription.
    await trx("subscriptions")
      .where(where)
      .update({
        ...device,
        archived_at: null,
        user_id: userId,
        subscription_status: SubscriptionStatus.SUBSCRIBED,
        subscribed_at: trx.fn.now(),
        unsubscribed_at: null,
        last_active_at: trx.fn.now(),
        tags: JSON.stringify(mergeTags({}, tags ?? {})),
      });
    await writeEvent(trx, {
      applicationId: existing.application_id,
      subscriptionId: existing.id,
      userId,
      eventType: "subscribed",
      fromStatus: existing.subscription_status,
      toStatus: SubscriptionStatus.SUBSCRIBED,
      source: "api",
      reason: "registered_after_archive",
    });
    return true;
  }
  const changes: Record<string, unknown> = { ...device, last_active_at: trx.fn.now() };
  if (tags) changes.tags = JSON.stringify(mergeTags(existing.tags, tags));
  // Absent user_id keeps the link: logging out is POST /users/logout, not a re-registration without a user.
  const relink = userId !== null && userId !== existing.user_id;
  if (relink) changes.user_id = userId;
  // The device presenting its token again re-confirms it, as update-token with the same token does:
  // a delivery error (-10 after a build sent to the wrong APNs environment) clears; an opt-out or
  // a block by the API stays. SDKs register on every launch and call update-token only on a change,
  // so without this such a device stayed unreachable for good.
  const { status, changes: statusChanges } = confirmedTokenStatus(trx, existing.subscription_status);
  Object.assign(changes, statusChanges);
  await trx("subscriptions").where(where).update(changes);
  if (status !== existing.subscription_status) {
    await writeEvent(trx, {
      applicationId: existing.application_id,
      subscriptionId: existing.id,
      userId: relink ? userId : existing.user_id,
      eventType: "token_updated",
      fromStatus: existing.subscription_status,
      toStatus: status,
      source: "api",
      reason: "registration",
      data: { token_changed: false },
    });
  }
  if (relink) {
    await writeEvent(trx, {
      applicationId: existing.application_id,
      subscriptionId: existing.id,
      userId,
      eventType: "user_linked",
      fromStatus: existing.subscription_status,
      toStatus: existing.subscription_status,
      source: "api",
      reason: "registration",
      data: { previous_user_id: existing.user_id },
    });
  }
  return false;
}

/**
 * Replaces the token of a locked row: validates it for the row's type, refuses a token another
 * subscription of the application already has (`duplicate_subscription`, it is an explicit change),
 * resets a delivery error (e.g. -10) to 1 per REF-002 §8.2, and records `token_updated`.
 * The same token again is accepted: it re-confirms the token and clears a delivery error too.
 */
async function replaceToken(deps: Deps, trx: Knex.Transaction, row: SubscriptionRow, rawToken: string): Promise<void> {
  const token = validTokenOrThrow(row.subscription_type, rawToken);
  const tokenHash = deps.secrets.hash(token);
  const changes: Record<string, unknown> = {};
  const tokenChanged = tokenHash !== row.token_hash;
  if (tokenChanged) {
    const other = await trx("subscriptions")
      .where({ application_id: row.application_id, subscription_type: row.subscription_type, token_hash: tokenHash })
      .whereNot("id", row.id)
      .first<{ id: string } | undefined>("id");
    if (other) throw new ApiError("duplicate_subscription", "Another subscription of this application already has this token", { subscription_id: other.id });
    changes.token_ciphertext = deps.secrets.encrypt(token, deviceTokenContext(row.application_id));
    changes.token_hash = tokenHash;
  } else {
    const resealed = deps.secrets.resealUnbound(row.token_ciphertext, token, deviceTokenContext(row.application_id));
    if (resealed) changes.token_ciphertext = resealed;
  }
  const { status: to, changes: statusChanges } = confirmedTokenStatus(trx, row.subscription_status);
  Object.assign(changes, statusChanges);
  if (Object.keys(changes).length > 0) {
    try {
      await trx("subscriptions").where({ application_id: row.application_id, id: row.id }).update(changes);
    } catch (error) {
      // A concurrent request claimed the token between the check and the update.
      if (isTokenConflict(error)) throw new ApiError("duplicate_subscription", "Another subscription of this application already has this token");
      throw error;
    }
  } else {
    // updated_at doubles as token_updated_at in the response, so touch the row even when nothing else changed.
    await trx("subscriptions").where({ application_id: row.application_id, id: row.id }).update({ token_hash: tokenHash });
  }
  await writeEvent(trx, {
    applicationId: row.application_id,
    subscriptionId: row.id,
    userId: row.user_id,
    eventType: "token_updated",
    fromStatus: row.subscription_status,
    toStatus: to,
    source: "api",
    data: { token_changed: tokenChanged },
  });
  row.subscription_status = to;
}

/** `POST /subscriptions/:id/update-token`. */
export async function updateSubscriptionToken(deps: Deps, applicationId: string, id: string, rawToken: string): Promise<void> {
  // Re-run as a deadlock victim against a user's erasure (see applyStatusAction).
  await inTransaction(deps.db, async (trx) => {
    const row = await lockSubscription(trx, applicationId, id);
    await replaceToken(deps, trx, row, rawToken);
  });
}

/** What `PATCH /subscriptions/:id` may change. */
export interface SubscriptionPatch {
  token?: string;
  deviceInfo?: DeviceInfoInput;
  timezone?: string | null;
  tags?: Record<string, string>;
}

/** `PATCH /subscriptions/:id`: token (as update-token), device info, timezone and tags (merged), in one transaction. */
export async function patchSubscription(deps: Deps, applicationId: string, id: string, patch: SubscriptionPatch): Promise<void> {
  // Re-run as a deadlock victim against a user's erasure (see applyStatusAction).
  await inTransaction(deps.db, async (trx) => {
    const row = await lockSubscription(trx, applicationId, id);
    if (patch.token !== undefined) await replaceToken(deps, trx, row, patch.token);
    const changes = deviceColumns(patch.deviceInfo, patch.timezone);
    if (patch.tags) changes.tags = JSON.stringify(mergeTags(row.tags, patch.tags));
    if (Object.keys(changes).length > 0) await trx("subscriptions").where({ application_id: applicationId, id }).update(changes);
  });
}

/** `POST /subscriptions/:id/tags`: merges tags (values already strings). */
export async function addTags(deps: Deps, applicationId: string, id: string, tags: Record<string, string>): Promise<void> {
  await deps.db.transaction(async (trx) => {
    const row = await lockSubscription(trx, applicationId, id);
    await trx("subscriptions").where({ application_id: applicationId, id }).update({ tags: JSON.stringify(mergeTags(row.tags, tags)) });
  });
}

/** `DELETE /subscriptions/:id/tags`: removes the given keys (unknown keys are ignored). */
export async function removeTags(deps: Deps, applicationId: string, id: string, tagKeys: readonly string[]): Promise<void> {
  await deps.db.transaction(async (trx) => {
    await lockSubscription(trx, applicationId, id);
    // jsonb `-` text[] drops every listed key in one statement (knex would expand an array binding, so one ? per key).
    await trx("subscriptions")
      .where({ application_id: applicationId, id })
      .update({ tags: trx.raw(`tags - array[${tagKeys.map(() => "?").join(", ")}]::text[]`, [...tagKeys]) });
  });
}
