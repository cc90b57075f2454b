import type { Knex } from "knex";
import type { Deps } from "../deps";
import { ApiError, notFound } from "../http/errors";
import { newId } from "../db/ids";
import { lockForTransaction } from "../db/knex";
import { validatePushMessage, type PushPlatform } from "../providers/validation";
import { PUSH_SUBSCRIPTION_TYPES, isPushSubscriptionType } from "../providers/types";
import { requestFieldOf, toPushMessage, type StoredPushOptions } from "./push-options";
import { startMessageWorkflows } from "./workflow-client";
import { withinApiDeadline } from "../http/temporal-deadline";
import { assertQuotaAvailable } from "../quota/quota";
import { selectRecipientFields, type RecipientRecord } from "../campaigns/personalize";
import { messagesTotal, providerLabel } from "../metrics/registry";
import { assertSameRequest } from "./idempotency";
import { UNSENT_STATUSES, type MessageStatus } from "./state-machine";

/** Content of the messages to create, already rendered. */
export interface MessageContent {
  title: string | null;
  body: string | null;
  data: Record<string, unknown>;
  options: StoredPushOptions;
  templateId?: string;
  templateVersion?: number;
  resentFromId?: string;
}

/**
 * Who receives it: one subscription, or every active push subscription of a user; the list forms
 * (campaign test sends) resolve each entry the same way and refuse the whole send on any bad one.
 */
export type Recipient = { subscriptionId: string } | { externalId: string } | { subscriptionIds: string[] } | { externalIds: string[] };

/** A resolved recipient with the fields a per-recipient content function can use. */
export type ResolvedRecipient = RecipientRecord;

/** Content for every recipient, or a function giving each its own (it may throw an ApiError to refuse the send). */
export type ContentSource = MessageContent | ((recipient: ResolvedRecipient) => MessageContent);

/** How a send is recorded besides its content; the defaults are a plain API send. */
export interface AcceptOptions {
  /** Stores the messages with `is_test` (campaign test sends). */
  isTest?: boolean;
  /** Data of the `created` events (default `{source: "api"}`, or `"resend"` for a resend). */
  eventData?: { source: string } & Record<string, unknown>;
  /**
   * Fingerprint of the request carrying the Idempotency-Key ({@link requestFingerprint}); the same
   * key with another fingerprint is refused. Without it, any request with the key matches.
   */
  requestHash?: string;
}

/** One message created (or found again through its Idempotency-Key). */
export interface AcceptedMessageView {
  message_id: string;
  subscription_id: string;
  status: string;
  created_at: string;
}

interface RecipientRow extends Partial<ResolvedRecipient> {
  id: string;
  user_id: string | null;
  subscription_type: string;
  subscription_status: number;
}

const PLATFORM_OF: Record<string, PushPlatform> = { iOSPush: "apns", AndroidPush: "fcm" };

/**
 * Selects the recipient columns; the template fields (tags, language, …, the user's external_id)
 * only when per-recipient content needs them, so a plain send reads no jsonb and joins nothing.
 */
function recipientQuery(db: Knex, applicationId: string, withFields: boolean): Knex.QueryBuilder {
  const q = db("subscriptions as s").where("s.application_id", applicationId).whereNull("s.archived_at").select("s.id", "s.user_id", "s.subscription_type", "s.subscription_status");
  return withFields ? selectRecipientFields(q) : q;
}

async function resolveRecipients(db: Knex, applicationId: string, recipient: Recipient, withFields: boolean): Promise<RecipientRow[]> {
  if ("subscriptionId" in recipient) return resolveSubscriptions(db, applicationId, [recipient.subscriptionId], withFields);
  if ("subscriptionIds" in recipient) return resolveSubscriptions(db, applicationId, recipient.subscriptionIds, withFields);
  if ("externalId" in recipient) return resolveUsers(db, applicationId, [recipient.externalId], withFields, "external_id");
  return resolveUsers(db, applicationId, recipient.externalIds, withFields, "external_ids");
}

/** Named subscriptions: each must exist here, be push and be subscribed; the first that is not refuses all. */
async function resolveSubscriptions(db: Knex, applicationId: string, ids: string[], withFields: boolean): Promise<RecipientRow[]> {
  const unique = [...new Set(ids)];
  const rows = (await recipientQuery(db, applicationId, withFields).whereIn("s.id", unique)) as RecipientRow[];
  const byId = new Map(rows.map((r) => [r.id, r]));
  for (const id of unique) {
    const row = byId.get(id);
    if (!row) throw notFound("subscription", id);
    if (!isPushSubscriptionType(row.subscription_type)) {
      throw new ApiError("invalid_subscription_type", `${row.subscription_type} messages are not sendable yet; push (iOSPush, AndroidPush) is`, { subscription_type: row.subscription_type });
    }
    if (row.subscription_status <= 0) {
      throw new ApiError("subscription_disabled", "The subscription is not subscribed", { subscription_id: row.id, subscription_status: row.subscription_status });
    }
  }
  return unique.map((id) => byId.get(id)!);
}

/**
 * Most devices one send to users reaches. A user id shared by thousands of devices (a "guest"
 * account) is an audience, and audiences are campaigns: batched, paced, one workflow per 500.
 * Past this a send would also outgrow one INSERT's 65,535 parameters.
 */
export const MAX_DEVICES_PER_SEND = 1_000;

/** Every active push subscription of each user; an unknown user, or one with none, refuses all. */
async function resolveUsers(db: Knex, applicationId: string, externalIds: string[], withFields: boolean, field: "external_id" | "external_ids"): Promise<RecipientRow[]> {
  const unique = [...new Set(externalIds)];
  const users = (await db("users").where("application_id", applicationId).whereIn("external_id", unique).select("id", "external_id")) as Array<{ id: string; external_id: string }>;
  const userOf = new Map(users.map((u) => [u.external_id, u.id]));
  for (const externalId of unique) {
    if (!userOf.has(externalId)) throw new ApiError("resource_not_found", "user not found", { external_id: externalId });
  }
  const rows = (await recipientQuery(db, applicationId, withFields)
    .whereIn("s.user_id", users.map((u) => u.id))
    .whereIn("s.subscription_type", PUSH_SUBSCRIPTION_TYPES)
    .where("s.subscription_status", ">", 0)
    .orderBy("s.id")
    .limit(MAX_DEVICES_PER_SEND + 1)) as RecipientRow[];
  if (rows.length > MAX_DEVICES_PER_SEND) {
    throw new ApiError("validation_error", "The request body failed validation", {
      in: "body",
      fields: { [field]: `reaches more than ${MAX_DEVICES_PER_SEND} subscribed devices; an audience that large is a campaign's (targeting_criteria.external_ids)` },
    });
  }
  const served = new Set(rows.map((r) => r.user_id));
  for (const externalId of unique) {
    if (!served.has(userOf.get(externalId)!)) {
      throw new ApiError("subscription_disabled", "The user has no active push subscription", { external_id: externalId });
    }
  }
  return rows;
}

function view(row: { id: string; subscription_id: string; status: string; created_at: Date }): AcceptedMessageView {
  return { message_id: row.id, subscription_id: row.subscription_id, status: row.status, created_at: new Date(row.created_at).toISOString() };
}

/** Rejects content no provider would take, at the API (REF-001 `message_too_large` 400), not later. */
export function assertSendable(content: Pick<MessageContent, "title" | "body" | "data" | "options">, platforms: PushPlatform[]): void {
  const probe = toPushMessage({ id: "00000000-0000-7000-8000-000000000000", ...content }, "validation-probe-token");
  const issues = validatePushMessage(probe, platforms).map((issue) => {
    const field = requestFieldOf(issue.field);
    return field === undefined ? issue : { ...issue, field, message: issue.message.replace(issue.field, field) };
  });
  if (issues.length === 0) return;
  const code = issues.some((i) => i.code === "message_too_large") ? "message_too_large" : "invalid_message_content";
  throw new ApiError(code, issues[0]!.message, { fields: Object.fromEntries(issues.map((i) => [i.field, i.message])) });
}

/**
 * What the first request with this Idempotency-Key created, or undefined for a new key; a different
 * request with the key is refused with `idempotency_key_reused`. Routes whose content depends on
 * state that can change between a request and its retry (a template since disabled, a resend's
 * original) call it before reading that state, so the retry gets the first answer, not an error.
 */
export async function replayIdempotentSend(
  deps: Deps,
  applicationId: string,
  idempotencyKey: string,
  requestHash: string | undefined,
): Promise<AcceptedMessageView[] | undefined> {
  const previous = await findByIdempotencyKey(deps.db, applicationId, idempotencyKey);
  if (previous.length === 0) return undefined;
  assertSameRequest(previous, requestHash);
  // Only a message still waiting to go out can lack its workflow (Temporal was down at its accept).
  await startAcceptedWorkflows(deps, applicationId, previous.filter((m) => UNSENT_STATUSES.includes(m.status)));
  return previous.map(view);
}

/**
 * Accepts a send: resolves recipients, validates size, checks quota, writes the messages (pending)
 * and their `created` events in one transaction, then starts one workflow per message. With an
 * Idempotency-Key, a repeated request returns the messages the first one created and starts
 * nothing new (a start with the same workflow id is a no-op); a different request with the same
 * key (another fingerprint in `options.requestHash`) is refused with `idempotency_key_reused`. If
 * Temporal is unreachable the messages stay pending in PostgreSQL and the reconciler starts them:
 * accepted means durable.
 */
export async function acceptMessages(
  deps: Deps,
  applicationId: string,
  recipient: Recipient,
  source: ContentSource,
  idempotencyKey: string | undefined,
  options: AcceptOptions = {},
): Promise<AcceptedMessageView[]> {
  if (idempotencyKey) {
    const previous = await replayIdempotentSend(deps, applicationId, idempotencyKey, options.requestHash);
    if (previous) return previous;
  }
  const perRecipient = typeof source === "function";
  const recipients = await resolveRecipients(deps.db, applicationId, recipient, perRecipient);
  // Every recipient's content is built and checked before anything is written: a refusal leaves no rows.
  const contents = recipients.map((r) => (perRecipient ? source(r as ResolvedRecipient) : source));
  if (perRecipient) recipients.forEach((r, i) => assertSendable(contents[i]!, [PLATFORM_OF[r.subscription_type]!]));
  else assertSendable(source, [...new Set(recipients.map((r) => PLATFORM_OF[r.subscription_type]!))]);
  await assertQuotaAvailable(deps.db, applicationId, recipients.length);

  const rows = recipients.map((r, i) => {
    const content = contents[i]!;
    return {
      id: newId(),
      application_id: applicationId,
      subscription_id: r.id,
      user_id: r.user_id,
      subscription_type: r.subscription_type,
      channel: "push",
      status: "pending",
      title: content.title,
      body: content.body,
      data: JSON.stringify(content.data),
      options: JSON.stringify(content.options),
      template_id: content.templateId ?? null,
      template_version: content.templateVersion ?? null,
      resent_from_id: content.resentFromId ?? null,
      idempotency_key: idempotencyKey ?? null,
      request_hash: idempotencyKey ? (options.requestHash ?? null) : null,
      is_test: options.isTest ?? false,
    };
  });
  const resentFrom = new Set(rows.filter((row) => row.resent_from_id !== null).map((row) => row.id));
  const outcome = await deps.db
    .transaction(async (trx) => {
      if (idempotencyKey) {
        // Requests with one key take turns: two different requests naming different recipients
        // never meet in the unique index, so without this both would insert and both answer 201.
        await lockForTransaction(trx, `message-idempotency:${applicationId}:${idempotencyKey}`);
        const earlier = await findByIdempotencyKey(trx, applicationId, idempotencyKey);
        if (earlier.length > 0) {
          assertSameRequest(earlier, options.requestHash);
          return { inserted: [], earlier };
        }
      }
      const created = (await trx("messages")
        .insert(rows)
        .onConflict(trx.raw("(application_id, idempotency_key, subscription_id) where idempotency_key is not null"))
        .ignore()
        .returning(["id", "subscription_id", "status", "created_at"])) as Array<{ id: string; subscription_id: string; status: string; created_at: Date }>;
      if (idempotencyKey && created.length < rows.length) {
        // Only a process without the lock above (an older release during a rolling deploy) gets
        // here: a different request rolls back what this one inserted, rather than leave it sent.
        assertSameRequest(await findByIdempotencyKey(trx, applicationId, idempotencyKey), options.requestHash);
      }
      if (created.length > 0) {
        await trx("message_events").insert(
          created.map((m) => ({ id: newId(), message_id: m.id, application_id: applicationId, event_type: "created", to_status: "pending", data: JSON.stringify(options.eventData ?? { source: resentFrom.has(m.id) ? "resend" : "api" }) })),
        );
      }
      return { inserted: created, earlier: undefined };
    })
    .catch((error: unknown) => {
      throw recipientGoneError(error) ?? error;
    });
  const { inserted } = outcome;
  // Only rows this request inserted (committed above) count; idempotent repeats are not new messages.
  const typeOf = new Map(recipients.map((r) => [r.id, r.subscription_type]));
  for (const m of inserted) messagesTotal.inc({ event: "accepted", channel: "push", provider: providerLabel({ subscription_type: typeOf.get(m.subscription_id) }) });
  // A concurrent request with the same key committed first: answer with its messages.
  const accepted = outcome.earlier ?? (idempotencyKey && inserted.length < rows.length ? await findByIdempotencyKey(deps.db, applicationId, idempotencyKey) : inserted);
  await startAcceptedWorkflows(deps, applicationId, accepted);
  return accepted.map(view);
}

/**
 * Starts the workflows of committed messages within the API's Temporal deadline. The rows are
 * durable already, so a Temporal that is down or slow costs the caller a few seconds and the
 * reconciler starts them later, rather than the SDK's ~20 s of reconnect attempts per request.
 */
async function startAcceptedWorkflows(deps: Deps, applicationId: string, messages: ReadonlyArray<{ id: string; subscription_id: string; created_at: Date }>): Promise<void> {
  try {
    await withinApiDeadline(deps, () =>
      startMessageWorkflows(deps, messages.map((m) => ({ id: m.id, application_id: applicationId, subscription_id: m.subscription_id, created_at: m.created_at }))),
    );
  } catch (error) {
    deps.logger.error({ err: error, application_id: applicationId, count: messages.length }, "workflow start failed; the reconciler will start these messages");
  }
}

/**
 * A recipient deleted (user erasure, subscription deleted) between resolving it and inserting its
 * message fails the insert's foreign key; that is the same answer as resolving it a moment later
 * (404), not a server error.
 */
function recipientGoneError(error: unknown): ApiError | undefined {
  const { code, constraint } = (error ?? {}) as { code?: string; constraint?: string };
  if (code !== "23503") return undefined;
  if (constraint === "messages_subscription_fk") return new ApiError("resource_not_found", "subscription not found", { reason: "the subscription was deleted while the message was being accepted" });
  if (constraint === "messages_user_fk") return new ApiError("resource_not_found", "user not found", { reason: "the user was deleted while the message was being accepted" });
  return undefined;
}

/** The messages an Idempotency-Key created, with their request fingerprints (one index lookup). */
async function findByIdempotencyKey(db: Knex | Knex.Transaction, applicationId: string, key: string) {
  return db("messages")
    .where({ application_id: applicationId, idempotency_key: key })
    .orderBy("id")
    .select<Array<{ id: string; subscription_id: string; status: MessageStatus; created_at: Date; request_hash: string | null }>>("id", "subscription_id", "status", "created_at", "request_hash");
}
