/**
 * Campaign content rules shared by the create route, the batch activity and test sends: which
 * providers a campaign must satisfy, and how its push options become a message's options.
 *
 * A campaign keeps `ttl_seconds` relative: its messages are created when their batch starts (a
 * scheduled campaign, each recurring run and each timezone group hours or days after the create),
 * and each message's absolute `expiration` is fixed then — once, like a single message's at its
 * acceptance, so retries of that message never extend it.
 */
import { PushOptionsShape, expirationOf, type StoredPushOptions } from "../messages/push-options";
import { assertSendable, type MessageContent } from "../messages/accept";
import type { PushPlatform } from "../providers/validation";
import type { TargetingCriteria } from "./targeting";

/**
 * Push options as a campaign stores them: `ttl_seconds` relative (campaigns created since this
 * rule), or an absolute `expiration` (campaigns created before it, kept as they were).
 */
export type CampaignPushOptions = StoredPushOptions & { ttl_seconds?: number };

/**
 * Picks the push options out of a create body (or a template's options), `ttl_seconds` left
 * relative. An absolute `expiration` from `createdAt` is stored beside it for workers of the
 * previous release (during a rolling deploy or after a rollback), which read only `expiration`:
 * they send with the old create-time expiry rather than none; this release's batches override it.
 */
export function campaignPushOptions(input: Record<string, unknown>, createdAt: Date): CampaignPushOptions {
  const options: Record<string, unknown> = {};
  for (const key of Object.keys(PushOptionsShape)) if (input[key] !== undefined) options[key] = input[key];
  const ttl = options.ttl_seconds as number | undefined;
  if (ttl !== undefined) options.expiration = expirationOf(ttl, createdAt);
  return options as CampaignPushOptions;
}

/** A campaign's options as the API shows them: with `ttl_seconds`, the previous-release `expiration` is not shown. */
export function campaignOptionsView(options: CampaignPushOptions | null | undefined): CampaignPushOptions {
  if (options?.ttl_seconds === undefined) return options ?? {};
  const { expiration: _legacy, ...shown } = options;
  return shown;
}

/**
 * The options of a message created at `createdAt`: `ttl_seconds` becomes the absolute expiration
 * counted from then. A stored absolute `expiration` (a campaign created before ttl_seconds was kept
 * relative) passes through unchanged, so those campaigns send exactly as they did.
 */
export function messageOptionsAt(options: CampaignPushOptions | null | undefined, createdAt: Date): StoredPushOptions {
  const { ttl_seconds: ttl, ...rest } = options ?? {};
  if (ttl === undefined) return rest;
  return { ...rest, ttl_seconds: ttl, expiration: expirationOf(ttl, createdAt) };
}

const PLATFORM_OF_TYPE: Record<string, PushPlatform> = { iOSPush: "apns", AndroidPush: "fcm" };

/** The providers a campaign can reach: those of `subscription_types` when it restricts them, else APNs and FCM. */
export function campaignPlatforms(criteria: Pick<TargetingCriteria, "subscription_types">): PushPlatform[] {
  const types = criteria.subscription_types;
  if (!types || types.length === 0) return ["apns", "fcm"];
  return [...new Set(types.map((t) => PLATFORM_OF_TYPE[t]!))];
}

/**
 * Refuses content no provider of the campaign's audience would take, with the codes POST /messages
 * answers (400 `message_too_large` / `invalid_message_content`), before anything is written: later
 * every one of its messages would fail the same way. Validated as a message created now.
 */
export function assertCampaignSendable(content: Pick<MessageContent, "title" | "body" | "data"> & { options: CampaignPushOptions }, criteria: Pick<TargetingCriteria, "subscription_types">, now: Date): void {
  assertSendable({ title: content.title, body: content.body, data: content.data, options: messageOptionsAt(content.options, now) }, campaignPlatforms(criteria));
}
