import { defineSearchAttributeKey, SearchAttributeType } from "@temporalio/common";

/** Tenant that owns a workflow; lets operators filter the Temporal UI by application. */
export const ApplicationIdKey = defineSearchAttributeKey("ApplicationId", SearchAttributeType.KEYWORD);
/** Message a workflow sends (message lifecycle workflows). */
export const MessageIdKey = defineSearchAttributeKey("MessageId", SearchAttributeType.KEYWORD);
/** Campaign a workflow belongs to (campaign and batch workflows). */
export const CampaignIdKey = defineSearchAttributeKey("CampaignId", SearchAttributeType.KEYWORD);
/** Subscription a message workflow targets. */
export const SubscriptionIdKey = defineSearchAttributeKey("SubscriptionId", SearchAttributeType.KEYWORD);
/** Current message status, kept up to date by the message workflow. */
export const MessageStatusKey = defineSearchAttributeKey("MessageStatus", SearchAttributeType.KEYWORD);

/** Every custom search attribute the platform registers, as name → Temporal type name. */
export const CUSTOM_SEARCH_ATTRIBUTES: Record<string, "Keyword"> = {
  ApplicationId: "Keyword",
  MessageId: "Keyword",
  CampaignId: "Keyword",
  SubscriptionId: "Keyword",
  MessageStatus: "Keyword",
};

/** The typed keys of {@link CUSTOM_SEARCH_ATTRIBUTES}, for APIs that take keys. */
export const CUSTOM_SEARCH_ATTRIBUTE_KEYS = [ApplicationIdKey, MessageIdKey, CampaignIdKey, SubscriptionIdKey, MessageStatusKey];
