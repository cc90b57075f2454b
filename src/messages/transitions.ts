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

/**
 * Applies an SDK receipt or conversion, including the implied receipt of a conversion that arrives
 * first, in one transaction. `noop` means the SDK repeated itself (answered 200, state unchanged).
 */
export async function applySdkAction(
  db: Knex,
  request: { messageId: string; applicationId: string; action: "receive" | "convert"; eventData?: Record<string, unknown> },
): Promise<TransitionResult> {
  return db.transaction(async (trx) => {
    const current = await trx("messages")
      .where({ id: request.messageId, application_id: request.applicationId })
      .forUpdate()
      .first<MessageRow | undefined>();
    if (!current) return { outcome: "not_found" as const };
    const plan = planSdkAction(request.action, current.status);
    if (plan === "noop" || plan === "illegal") return { outcome: plan, message: current };
    let last: TransitionResult = { outcome: "noop", message: current };
    for (const step of plan) {
      last = await applyMessageTransition(trx, { messageId: request.messageId, applicationId: request.applicationId, action: step, eventData: request.eventData });
      if (last.outcome !== "applied") return last;
    }
    return last.outcome === "applied" ? { ...last, from: current.status } : last;
  });
}
