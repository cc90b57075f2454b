/**
 * Campaign test sends (DESIGN-005 테스트 발송): the campaign's content, rendered per recipient when it
 * is personalized, sent to a few named subscriptions or users only. They are ordinary single
 * messages (pending rows, one message workflow each, quota debited as usual) marked `is_test`, with
 * no campaign_id: the campaign's status, stats, messages and one-message-per-recipient index never
 * see them; the `created` event names the campaign instead.
 */
import { z } from "zod";
import { defineRoute, type RouteSpec } from "../http/route";
import { IdParams, uuidField } from "../http/validation";
import { ApiError } from "../http/errors";
import { acceptMessages, type ContentSource, type MessageContent, type Recipient } from "../messages/accept";
import { AcceptedMessage } from "../messages/schemas";
import { ExternalUserId } from "../subscriptions/schemas";
import { idempotencyKeyOf } from "../http/idempotency";
import { requestFingerprint } from "../messages/idempotency";
import { contentPerRecipient, recipientRenderer } from "./personalize";
import type { CampaignRow } from "./repository";
import { messageOptionsAt } from "./content";

/** Most recipients one test send names (subscriptions, or users whose devices all receive it). */
export const MAX_TEST_RECIPIENTS = 50;

/** Body of `POST /campaigns/:id/test-send`: exactly one of subscription_ids or external_ids. */
export const TestSendBody = z
  .strictObject({
    subscription_ids: z.array(uuidField).min(1).max(MAX_TEST_RECIPIENTS).optional(),
    external_ids: z.array(ExternalUserId).min(1).max(MAX_TEST_RECIPIENTS).optional().describe("every subscribed push device of these users"),
  })
  .superRefine((body, ctx) => {
    if ((body.subscription_ids === undefined) === (body.external_ids === undefined)) {
      ctx.addIssue({ code: "custom", path: ["subscription_ids"], message: "give exactly one of subscription_ids or external_ids" });
    }
  });

/** Answer of a test send: the messages created, one per device. */
export const TestSendResult = z.object({ campaign_id: z.string(), messages: z.array(AcceptedMessage) });

/**
 * What each test recipient gets: the stored content, or for a personalized campaign the template
 * rendered with this recipient's fields. A recipient the template cannot be rendered for refuses
 * the whole test (before anything is written), naming the subscription.
 */
function testContent(campaign: CampaignRow, now: Date): ContentSource {
  const { content } = campaign;
  const base: MessageContent = {
    title: content.title,
    body: content.body,
    data: content.data ?? {},
    // A test message is accepted now: its ttl_seconds counts from now, not from the campaign's creation.
    options: messageOptionsAt(content.options, now),
    templateId: campaign.template_id ?? undefined,
    templateVersion: campaign.template_version ?? undefined,
  };
  const personalized = content.personalized;
  if (!personalized) return base;
  return contentPerRecipient(base, recipientRenderer(personalized, content.variables));
}

/** `POST /campaigns/:id/test-send`. */
export const testSendRoutes: RouteSpec[] = [
  defineRoute({
    method: "post",
    path: "/campaigns/:id/test-send",
    summary: "Send the campaign's (per-recipient rendered) content to the given subscriptions or users only, marked is_test; any campaign status",
    tag: "Campaigns",
    auth: "apiKey",
    params: IdParams,
    body: TestSendBody,
    headers: [
      {
        name: "Idempotency-Key",
        description:
          "Repeat a test send with the same key to get the first messages back; nothing is sent twice. One key space with the send endpoints: the same key with a different request answers 409 idempotency_key_reused.",
      },
    ],
    responses: { 201: { description: "The test messages; delivery is asynchronous", schema: TestSendResult } },
    handler: async ({ params, body, deps, application, req }) => {
      const campaign = await deps.db("message_campaigns").where({ id: params.id, application_id: application.id }).first<CampaignRow | undefined>();
      if (!campaign) throw new ApiError("campaign_not_found", undefined, { id: params.id });
      const recipient: Recipient = body.subscription_ids ? { subscriptionIds: body.subscription_ids } : { externalIds: body.external_ids! };
      // A test send retried after a lost response pushed to the QA devices twice and debited twice.
      const idempotencyKey = idempotencyKeyOf(req.header("idempotency-key"));
      const accepted = await acceptMessages(deps, application.id, recipient, testContent(campaign, new Date()), idempotencyKey, {
        isTest: true,
        eventData: { source: "campaign_test", campaign_id: campaign.id },
        requestHash: idempotencyKey ? requestFingerprint(`POST /campaigns/${campaign.id}/test-send`, body) : undefined,
      });
      return { status: 201, data: { campaign_id: campaign.id, messages: accepted } };
    },
  }),
];
