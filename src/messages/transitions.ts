import type { Knex } from "knex";
import { newId } from "../db/ids";
import { afterCommit } from "../metrics/after-commit";
import { messagesTotal, providerLabel } from "../metrics/registry";
import { TRANSITIONS, isMessageStatus, planSdkAction, type MessageStatus, type TransitionName } from "./state-machine";

/** A `messages` row as the pipeline reads it. */
export interface MessageRow {
  id: string;
  application_id: string;
  subscription_id: string | null;
  user_id: string | null;
  campaign_id: string | null;
  template_id: string | null;
  template_version: number | null;
  status: MessageStatus;
  title: string | null;
  body: string | null;
  data: Record<string, unknown>;
  options: Record<string, unknown>;
  provider: string | null;
  provider_message_id: string | null;
  error_code: string | null;
  error_message: string | null;
  attempts: number;
  idempotency_key: string | null;
  resent_from_id: string | null;
  /** Fingerprint of the request that carried `idempotency_key` (NULL: matches any request). */
  request_hash: string | null;
  /** When a received message stops accepting a conversion (NULL before it was received, or on rows from before the column). */
  conversion_deadline: Date | null;
  is_test: boolean;
  subscription_type: string | null;
  sent_at: Date | null;
  received_at: Date | null;
  converted_at: Date | null;
  failed_at: Date | null;
  cancelled_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

/** Inputs of one transition: which message, which action, and what else to record with it. */
export interface TransitionRequest {
  messageId: string;
  /** When given, the message must belong to this application (API calls); workers omit it. */
  applicationId?: string;
  action: TransitionName;
  /** Extra columns set in the same UPDATE (provider id, error code, attempts …). */
  set?: Record<string, unknown>;
  /** Stored on the message_events row. */
  eventData?: Record<string, unknown>;
}

/** Result of a transition attempt; `message` is the row after it (or as it was when refused). */
export type TransitionResult =
  | { outcome: "applied"; from: MessageStatus; message: MessageRow }
  | { outcome: "noop" | "illegal"; message: MessageRow }
  | { outcome: "not_found" };

/**
 * Applies one transition as a conditional update (`… WHERE status IN (allowed)`) and writes its
 * message_events row and timestamp in the same transaction, so a receipt racing an expiry or a
 * cancel racing a send can never both win. Subscription counters follow receipts and conversions.
 */
export async function applyMessageTransition(db: Knex | Knex.Transaction, request: TransitionRequest): Promise<TransitionResult> {
  const result = await applyInTransaction(db, request);
  if (result.outcome === "applied") {
    const { message } = result;
    const event = TRANSITIONS[request.action].event;
    // Counted when the outermost transaction commits: a rolled-back transition is not an event.
    afterCommit(db, () => messagesTotal.inc({ event, channel: (message as { channel?: string }).channel ?? "push", provider: providerLabel(message) }));
  }
  return result;
}

async function applyInTransaction(db: Knex | Knex.Transaction, request: TransitionRequest): Promise<TransitionResult> {
  return db.transaction(async (trx) => {
    const rule = TRANSITIONS[request.action];
    const set: Record<string, unknown> = { ...request.set, status: rule.to };
    if (rule.timestamp) set[rule.timestamp] = trx.fn.now();
    for (const [key, value] of Object.entries(set)) {
      if (value !== null && typeof value === "object" && !(value instanceof Date) && !isKnexRaw(value)) set[key] = JSON.stringify(value);
    }
    const scope = trx("messages").where("id", request.messageId);
    if (request.applicationId) scope.where("application_id", request.applicationId);
    const previous = await scope.clone().forUpdate().first<{ status: string } | undefined>("status");
    if (!previous) return { outcome: "not_found" as const };
    if (!isMessageStatus(previous.status)) throw new Error(`message ${request.messageId} has unknown status ${previous.status}`);
    if (!(rule.from as readonly string[]).includes(previous.status)) {
      const message = await scope.clone().first<MessageRow>();
      const outcome = (rule.alreadyDoneAt as readonly string[]).includes(previous.status) ? ("noop" as const) : ("illegal" as const);
      return { outcome, message: message! };
    }
    const [message] = (await scope.clone().whereIn("status", rule.from).update(set, "*")) as MessageRow[];
    await trx("message_events").insert({
      id: newId(),
      message_id: request.messageId,
      application_id: message!.application_id,
      event_type: rule.event,
      from_status: previous.status,
      to_status: rule.to,
      data: JSON.stringify(request.eventData ?? {}),
    });
    if (message!.subscription_id && (request.action === "receive" || request.action === "convert")) {
      const counter = request.action === "receive" ? "total_messages_received" : "total_messages_converted";
      await trx("subscriptions")
        .where({ id: message!.subscription_id, application_id: message!.application_id })
        .update({ [counter]: trx.raw("?? + 1", [counter]), last_active_at: trx.fn.now() });
    }
    return { outcome: "applied" as const, from: previous.status, message: message! };
  });
}

function isKnexRaw(value: object): boolean {
  return typeof (value as { toSQL?: unknown }).toSQL === "function";
}

/** An SDK action's result: a transition result, or a conversion refused because the window closed at `closedAt`. */
export type SdkActionResult = TransitionResult | { outcome: "window_closed"; message: MessageRow; closedAt: Date };

/** SQL for "now + the window", from a millisecond count bound as a parameter. */
const PLUS_WINDOW = "?::double precision * interval '1 millisecond'";

/**
 * Applies an SDK receipt or conversion, including the implied receipt of a conversion that arrives
 * first, in one transaction. `noop` means the SDK repeated itself (answered 200, state unchanged).
 *
 * The conversion window is decided here and only here (SEQ-003: after it, a received message is
 * final). A receipt stores `conversion_deadline = received_at + conversionWindowMs`; a conversion
 * of a received message is applied only while PostgreSQL's clock, read after the row lock is held,
 * is before that deadline. The message workflow, when its own window timer fires, moves the deadline
 * to that moment under the same row lock (`closeConversionWindow`), so a conversion racing the
 * expiry either commits first (and the workflow sees `converted`) or is refused: the database and
 * the workflow cannot disagree. Rows received before the column existed use `received_at` + the
 * window given here.
 */
export async function applySdkAction(
  db: Knex,
  request: { messageId: string; applicationId: string; action: "receive" | "convert"; conversionWindowMs: number; eventData?: Record<string, unknown> },
): Promise<SdkActionResult> {
  return db.transaction(async (trx) => {
    // A campaign chunk holds its messages until its slowest send answers, and devices report
    // receipts before that: a receipt waits for the row at most this long (then 503, Retry-After 1)
    // rather than hold an API connection every tenant shares for the whole send.
    await trx.raw("set local lock_timeout = '5s'");
    const current = await trx("messages")
      .where({ id: request.messageId, application_id: request.applicationId })
      .forUpdate()
      .first<MessageRow | undefined>();
    if (!current) return { outcome: "not_found" as const };
    const plan = planSdkAction(request.action, current.status);
    if (plan === "noop" || plan === "illegal") return { outcome: plan, message: current };
    if (current.status === "received" && plan.includes("convert")) {
      // A separate statement after the lock: clock_timestamp() is read while this transaction
      // holds the row, so nothing can close (or convert) it between the check and the update.
      const { rows } = await trx.raw<{ rows: Array<{ closes_at: Date; open: boolean }> }>(
        `SELECT w.closes_at, w.closes_at > clock_timestamp() AS open
           FROM messages m, LATERAL (SELECT coalesce(m.conversion_deadline, m.received_at + ${PLUS_WINDOW}) AS closes_at) w
          WHERE m.id = ?`,
        [request.conversionWindowMs, request.messageId],
      );
      const window = rows[0]!;
      if (!window.open) return { outcome: "window_closed" as const, message: current, closedAt: new Date(window.closes_at) };
    }
    let last: TransitionResult = { outcome: "noop", message: current };
    for (const step of plan) {
      // The receipt opens the conversion window: received_at and the deadline share now(). A send
      // the device's report implies clears the lost attempt's temporary error, as a sender's success does.
      const set =
        step === "receive" ? { conversion_deadline: trx.raw(`now() + ${PLUS_WINDOW}`, [request.conversionWindowMs]) } : step === "send" ? { error_code: null, error_message: null } : undefined;
      last = await applyMessageTransition(trx, { messageId: request.messageId, applicationId: request.applicationId, action: step, set, eventData: request.eventData });
      if (last.outcome !== "applied") return last;
    }
    return last.outcome === "applied" ? { ...last, from: current.status } : last;
  });
}

/**
 * Closes a received message's conversion window now, unless it already closed: called by the
 * message workflow when its window timer fires, under the row lock that conversions take too.
 * Answers the message's status (`converted` when a conversion committed first).
 */
export async function closeConversionWindow(db: Knex, messageId: string): Promise<MessageStatus | undefined> {
  return db.transaction(async (trx) => {
    const message = await trx("messages").where("id", messageId).forUpdate().first<{ status: MessageStatus } | undefined>("status");
    if (!message || message.status !== "received") return message?.status;
    // Usually the deadline (stored at the receipt) has already passed and nothing is written; it is
    // moved only when this worker's clock or window ran ahead of the API's.
    await trx("messages")
      .where("id", messageId)
      .where((q) => q.whereNull("conversion_deadline").orWhere("conversion_deadline", ">", trx.raw("clock_timestamp()")))
      .update({ conversion_deadline: trx.raw("clock_timestamp()") });
    return message.status;
  });
}
