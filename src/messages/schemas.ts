import { z } from "zod";
import { PushOptionsShape } from "./push-options";
import { MESSAGE_STATUSES } from "./state-machine";
import { PaginationQuery, refuseEmptyWindow } from "../http/pagination";
import { apiInstant, uuidField } from "../http/validation";
import { ExternalUserId } from "../subscriptions/schemas";

const Recipient = {
  subscription_id: uuidField.optional(),
  // The one shared external-id schema (trimmed), so a send finds the user identify stored.
  external_id: ExternalUserId.optional().describe("send to every active push subscription of this user"),
};

/** Custom data delivered with the push (FCM receives every value as a string). */
const Data = z.record(z.string().min(1).max(256), z.unknown());

const exactlyOneRecipient = (body: { subscription_id?: string; external_id?: string }, ctx: z.RefinementCtx) => {
  if ((body.subscription_id === undefined) === (body.external_id === undefined)) {
    ctx.addIssue({ code: "custom", path: ["subscription_id"], message: "give exactly one of subscription_id or external_id" });
  }
};

/** Body of `POST /messages` (REF-001 §4.1 plus push options and external_id fan-out). */
export const SendMessageBody = z
  .strictObject({
    ...Recipient,
    title: z.string().optional(),
    body: z.string().optional(),
    data: Data.optional(),
    ...PushOptionsShape,
  })
  .superRefine(exactlyOneRecipient)
  .superRefine((body, ctx) => {
    if (!body.title && !body.body) ctx.addIssue({ code: "custom", path: ["body"], message: "title or body is required" });
  });

/** Body of `POST /messages/template` (REF-001 §4.2). Push options here override the template's. */
export const SendTemplateMessageBody = z
  .strictObject({
    ...Recipient,
    template_id: uuidField,
    variables: z.record(z.string(), z.unknown()).optional(),
    ...PushOptionsShape,
  })
  .superRefine(exactlyOneRecipient);

/** Body of `POST /messages/:id/status` (REF-001 §4.4): the SDK's receipt. */
export const MessageStatusBody = z.strictObject({ status: z.literal("received") });

/** Body of `POST /messages/:id/convert` (REF-001 §4.5). */
export const ConvertMessageBody = z.strictObject({
  action: z.string().trim().min(1).max(128).default("opened"),
  data: z.record(z.string(), z.unknown()).optional(),
});

/**
 * A message's `error_code` to filter by (`unregistered`: the app was uninstalled, DESIGN-005's
 * "앱 삭제"; `receipt_timeout`, `quota_exceeded`, …); the page's `total_items` is then their count.
 */
export const ErrorCodeFilter = z.string().trim().min(1).max(100).describe("error_code, e.g. unregistered (app uninstalled)");

/** Query of `GET /messages`. */
export const ListMessagesQuery = PaginationQuery.extend({
  status: z.enum(MESSAGE_STATUSES).optional(),
  subscription_id: uuidField.optional(),
  external_id: ExternalUserId.optional(),
  campaign_id: uuidField.optional(),
  error_code: ErrorCodeFilter.optional(),
  from: apiInstant.optional().describe("created at or after (ISO 8601)"),
  to: apiInstant.optional().describe("created before (ISO 8601)"),
})
  .strict()
  .superRefine(refuseEmptyWindow);

/** One accepted message in a send response. */
export const AcceptedMessage = z.object({ message_id: z.string(), subscription_id: z.string(), status: z.string(), created_at: z.string() });
