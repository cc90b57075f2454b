import { z } from "zod";
import { defineRoute, type RouteSpec } from "../http/route";
import { IdParams } from "../http/validation";
import { ApiError, notFound } from "../http/errors";
import { paginate } from "../http/pagination";
import type { Deps } from "../deps";
import { ConvertMessageBody, ListMessagesQuery, MessageStatusBody, SendMessageBody, SendTemplateMessageBody, AcceptedMessage } from "./schemas";
import { acceptMessages, replayIdempotentSend, type AcceptedMessageView, type ContentSource, type Recipient } from "./accept";
import { renewedPushOptions, storedPushOptions, PushOptionsShape } from "./push-options";
import { applyMessageTransition, applySdkAction, type MessageRow, type SdkActionResult, type TransitionResult } from "./transitions";
import { requestFingerprint } from "./idempotency";
import { idempotencyKeyOf } from "../http/idempotency";
import { signalMessageWorkflow } from "./workflow-client";
import { cancelledSignal, convertedSignal, receivedSignal } from "../../workflows/message";
import { loadTemplateForSend } from "../templates/repository";
import { renderedContent, renderTemplate } from "../templates/render";
import { contentPerRecipient, referencesRecipient, singleSendRenderer } from "../campaigns/personalize";
import { iso } from "../http/format";
import { refundMessageQuota } from "../quota/quota";

const TAG = "Messages";
const IDEMPOTENCY_HEADER = {
  name: "Idempotency-Key",
  description:
    "Repeat a request with the same key to get the first result back; nothing is sent twice. The same key with a different request (body, endpoint or resent message) answers 409 idempotency_key_reused.",
};


function recipientOf(body: { subscription_id?: string; external_id?: string }): Recipient {
  return body.subscription_id ? { subscriptionId: body.subscription_id } : { externalId: body.external_id! };
}

/** REF-001 answers one message as `{message_id, status, created_at}`; a fan-out lists them all. */
function sendResponse(accepted: AcceptedMessageView[], recipient: Recipient) {
  if ("subscriptionId" in recipient) return { status: 201, data: accepted[0] };
  return { status: 201, data: { message_ids: accepted.map((m) => m.message_id), messages: accepted } };
}

function pushOptionsOf(body: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.keys(PushOptionsShape).filter((k) => body[k] !== undefined).map((k) => [k, body[k]]));
}

async function messageView(deps: Deps, applicationId: string, id: string) {
  const message = await deps.db("messages").where({ id, application_id: applicationId }).first<MessageRow | undefined>();
  if (!message) throw notFound("message", id);
  const events = await deps.db("message_events").where("message_id", id).orderBy([{ column: "created_at" }, { column: "id" }]);
  return {
    ...summary(message),
    data: message.data,
    options: message.options,
    provider: message.provider,
    provider_message_id: message.provider_message_id,
    error_code: message.error_code,
    error_message: message.error_message,
    attempts: message.attempts,
    template_id: message.template_id,
    template_version: message.template_version,
    resent_from_id: message.resent_from_id,
    // Set by the receipt; after it a received message is final and a conversion is refused.
    conversion_window_closes_at: iso(message.conversion_deadline),
    events: events.map((e: { event_type: string; from_status: string | null; to_status: string | null; data: unknown; created_at: Date }) => ({
      event_type: e.event_type,
      from_status: e.from_status,
      to_status: e.to_status,
      data: e.data,
      occurred_at: iso(e.created_at),
    })),
  };
}

function summary(message: MessageRow) {
  return {
    id: message.id,
    subscription_id: message.subscription_id,
    campaign_id: message.campaign_id,
    // Campaign test sends are ordinary messages otherwise; lists and views tell them apart by this.
    is_test: message.is_test,
    title: message.title,
    body: message.body,
    status: message.status,
    created_at: iso(message.created_at),
    sent_at: iso(message.sent_at),
    received_at: iso(message.received_at),
    converted_at: iso(message.converted_at),
    failed_at: iso(message.failed_at),
    cancelled_at: iso(message.cancelled_at),
  };
}

/**
 * Turns a refused transition into REF-001's answer. Illegal changes answer
 * `message_already_processed` (400, REF-001 §8.3) with the current status, and change nothing. A
 * conversion after the conversion window answers `409 invalid_status_transition` with when it closed:
 * the message was not processed further, it became final (SEQ-003 `received --> [*]: 만료`).
 */
function assertTransition(result: TransitionResult | SdkActionResult, id: string, attempted: string): MessageRow {
  if (result.outcome === "not_found") throw notFound("message", id);
  if (result.outcome === "window_closed") {
    const closedAt = result.closedAt.toISOString();
    throw new ApiError("invalid_status_transition", `The conversion window closed at ${closedAt}; the message stays received`, {
      id,
      status: result.message.status,
      attempted,
      received_at: iso(result.message.received_at),
      conversion_window_closed_at: closedAt,
    });
  }
  if (result.outcome === "illegal") {
    throw new ApiError("message_already_processed", `The message is ${result.message.status}; it cannot become ${attempted}`, { id, status: result.message.status, attempted });
  }
  return result.message;
}

/** Message routes (REF-001 §4): send, send from template, read, SDK receipts and conversions, cancel, resend. */
export const messageRoutes: RouteSpec[] = [
  defineRoute({
    method: "post",
    path: "/messages",
    summary: "Send a push to one subscription, or to every active push subscription of a user (external_id)",
    tag: TAG,
    auth: "apiKey",
    body: SendMessageBody,
    headers: [IDEMPOTENCY_HEADER],
    responses: { 201: { description: "Accepted; delivery is asynchronous", schema: AcceptedMessage } },
    handler: async ({ body, deps, application, req }) => {
      const recipient = recipientOf(body);
      const idempotencyKey = idempotencyKeyOf(req.header("idempotency-key"));
      const accepted = await acceptMessages(
        deps,
        application.id,
        recipient,
        { title: body.title ?? null, body: body.body ?? null, data: body.data ?? {}, options: storedPushOptions(pushOptionsOf(body), new Date()) },
        idempotencyKey,
        { requestHash: idempotencyKey ? requestFingerprint("POST /messages", body) : undefined },
      );
      return sendResponse(accepted, recipient);
    },
  }),
  defineRoute({
    method: "post",
    path: "/messages/template",
    summary: "Send a push rendered from a template (the version used is recorded on the message)",
    tag: TAG,
    auth: "apiKey",
    body: SendTemplateMessageBody,
    headers: [IDEMPOTENCY_HEADER],
    responses: { 201: { description: "Accepted; delivery is asynchronous", schema: AcceptedMessage } },
    handler: async ({ body, deps, application, req }) => {
      const recipient = recipientOf(body);
      const idempotencyKey = idempotencyKeyOf(req.header("idempotency-key"));
      // The request, not the rendering: a template edited or disabled since is still the same request.
      const requestHash = idempotencyKey ? requestFingerprint("POST /messages/template", body) : undefined;
      const replayed = idempotencyKey ? await replayIdempotentSend(deps, application.id, idempotencyKey, requestHash) : undefined;
      if (replayed) return sendResponse(replayed, recipient);
      const template = await loadTemplateForSend(deps.db, application.id, body.template_id);
      const variables = body.variables ?? {};
      const options = storedPushOptions({ ...template.content.options, ...pushOptionsOf(body) }, new Date());
      const base = { options, templateId: template.templateId, templateVersion: template.version };
      // `{{tags.first_name}}` reads each device's own tags, as campaigns and test sends do; the
      // caller's variables win where they name the same field.
      const content: ContentSource = referencesRecipient(template.content)
        ? contentPerRecipient(base, singleSendRenderer(template.content, variables))
        : { ...base, ...renderedContent(renderTemplate(template.content, variables)) };
      const accepted = await acceptMessages(deps, application.id, recipient, content, idempotencyKey, { requestHash });
      return sendResponse(accepted, recipient);
    },
  }),
  defineRoute({
    method: "get",
    path: "/messages",
    summary: "List messages (filters: status, subscription_id, external_id, campaign_id, error_code, from/to)",
    tag: TAG,
    auth: "apiKey",
    query: ListMessagesQuery,
    responses: { 200: { description: "A page of messages" } },
    handler: async ({ query, deps, application }) => {
      const q = deps.db("messages as m").where("m.application_id", application.id).select("m.*");
      if (query.status) q.where("m.status", query.status);
      if (query.subscription_id) q.where("m.subscription_id", query.subscription_id);
      if (query.error_code) q.where("m.error_code", query.error_code);
      if (query.campaign_id) {
        // A recurring campaign's messages carry its runs' ids: asked for it, the list holds its runs' messages.
        const campaignId = query.campaign_id;
        q.whereIn(
          "m.campaign_id",
          deps.db("message_campaigns").where("application_id", application.id).andWhere((c) => c.where("id", campaignId).orWhere("parent_campaign_id", campaignId)).select("id"),
        );
      }
      if (query.from) q.where("m.created_at", ">=", new Date(query.from));
      if (query.to) q.where("m.created_at", "<", new Date(query.to));
      if (query.external_id) {
        q.whereIn("m.user_id", deps.db("users").where({ application_id: application.id, external_id: query.external_id }).select("id"));
      }
      const { rows, pagination } = await paginate<MessageRow>(q, query.page, query.per_page, [
        { column: "m.created_at", order: "desc" },
        { column: "m.id", order: "desc" },
      ]);
      return { data: { messages: rows.map(summary), pagination } };
    },
  }),
  defineRoute({
    method: "get",
    path: "/messages/:id",
    summary: "Get a message with its status history",
    tag: TAG,
    auth: "apiKey",
    params: IdParams,
    responses: { 200: { description: "The message and its events" } },
    handler: async ({ params, deps, application }) => ({ data: await messageView(deps, application.id, params.id) }),
  }),
  defineRoute({
    method: "post",
    path: "/messages/:id/status",
    summary: "SDK receipt: the device received the message (idempotent)",
    tag: TAG,
    auth: "apiKey",
    params: IdParams,
    body: MessageStatusBody,
    responses: { 200: { description: "The message status after the receipt" } },
    handler: async ({ params, deps, application }) => {
      const result = await applySdkAction(deps.db, { messageId: params.id, applicationId: application.id, action: "receive", conversionWindowMs: deps.config.AUTOMATA_CONVERSION_WINDOW });
      const message = assertTransition(result, params.id, "received");
      // Campaign messages have no workflow of their own (their batch owns the receipt window).
      if (result.outcome === "applied" && message.campaign_id === null) await signalMessageWorkflow(deps, params.id, receivedSignal);
      return { data: { id: message.id, status: message.status, received_at: iso(message.received_at) } };
    },
  }),
  defineRoute({
    method: "post",
    path: "/messages/:id/convert",
    summary: "SDK conversion: the user opened or acted on the message (idempotent; implies the receipt)",
    tag: TAG,
    auth: "apiKey",
    params: IdParams,
    body: ConvertMessageBody,
    // An SDK may report a plain "opened" with no body at all.
    optionalBody: true,
    responses: { 200: { description: "The message status after the conversion" } },
    handler: async ({ params, body, deps, application }) => {
      const result = await applySdkAction(deps.db, {
        messageId: params.id,
        applicationId: application.id,
        action: "convert",
        conversionWindowMs: deps.config.AUTOMATA_CONVERSION_WINDOW,
        eventData: { action: body.action, ...(body.data ? { data: body.data } : {}) },
      });
      const message = assertTransition(result, params.id, "converted");
      if (result.outcome === "applied" && message.campaign_id === null) await signalMessageWorkflow(deps, params.id, convertedSignal);
      return { data: { id: message.id, status: message.status, converted_at: iso(message.converted_at) } };
    },
  }),
  defineRoute({
    method: "post",
    path: "/messages/:id/cancel",
    summary: "Cancel a message that has not been sent yet",
    tag: TAG,
    auth: "apiKey",
    params: IdParams,
    responses: { 200: { description: "The cancelled message" } },
    handler: async ({ params, deps, application }) => {
      // A send in progress holds the row lock; waiting for it gives the true answer (sent or not).
      const result = await deps.db.transaction(async (trx) => {
        await trx.raw("set local lock_timeout = '20s'");
        const transition = await applyMessageTransition(trx, { messageId: params.id, applicationId: application.id, action: "cancel", eventData: { source: "api" } });
        // Refunded with the cancel, not only by the workflow: one that an operator terminated
        // meanwhile never would. Idempotent, so the workflow's own refund finds nothing left.
        if (transition.outcome === "applied") await refundMessageQuota(trx, { applicationId: application.id, messageId: params.id });
        return transition;
      });
      const message = assertTransition(result, params.id, "cancelled");
      if (result.outcome === "applied") await signalMessageWorkflow(deps, params.id, cancelledSignal);
      return { data: { id: message.id, status: message.status, cancelled_at: iso(message.cancelled_at) } };
    },
  }),
  defineRoute({
    method: "post",
    path: "/messages/:id/resend",
    summary: "Resend a failed message as a new message that references it",
    tag: TAG,
    auth: "apiKey",
    params: IdParams,
    headers: [IDEMPOTENCY_HEADER],
    responses: { 201: { description: "The new message", schema: AcceptedMessage.extend({ resent_from_id: z.string() }) } },
    handler: async ({ params, deps, application, req }) => {
      const original = await deps.db("messages").where({ id: params.id, application_id: application.id }).first<MessageRow | undefined>();
      if (!original) throw notFound("message", params.id);
      if (original.status !== "failed") {
        throw new ApiError("message_already_processed", `Only failed messages can be resent; this one is ${original.status}`, { id: params.id, status: original.status });
      }
      // Deleted (erased with its user): not found, as any send to a deleted subscription answers.
      if (!original.subscription_id) throw new ApiError("resource_not_found", "subscription not found", { id: params.id, reason: "the message's subscription was deleted" });
      const idempotencyKey = idempotencyKeyOf(req.header("idempotency-key"));
      // Which message is resent is the whole request: the same key for another one is a different request.
      const requestHash = idempotencyKey ? requestFingerprint("POST /messages/:id/resend", { message_id: original.id }) : undefined;
      const [accepted] = await acceptMessages(
        deps,
        application.id,
        { subscriptionId: original.subscription_id },
        {
          title: original.title,
          body: original.body,
          data: original.data ?? {},
          // Its own ttl from now: the original's deadline has usually passed (it may have failed `expired`).
          options: renewedPushOptions(original.options, original.created_at, new Date()),
          templateId: original.template_id ?? undefined,
          templateVersion: original.template_version ?? undefined,
          resentFromId: original.id,
        },
        idempotencyKey,
        { requestHash },
      );
      return { status: 201, data: { ...accepted, resent_from_id: original.id } };
    },
  }),
];
