import { z } from "zod";
import type { PushMessage } from "../providers";
import { FAILURE_CODES } from "./failure-codes";

/** Push delivery options accepted by every send endpoint (snake_case, stored as-is in `messages.options`). */
export const PushOptionsShape = {
  badge: z.number().int().min(0).max(99_999).optional(),
  sound: z.string().max(256).optional(),
  category: z.string().max(256).optional().describe("APNs category / notification actions"),
  thread_id: z.string().max(256).optional().describe("APNs thread-id (groups notifications)"),
  mutable_content: z.boolean().optional(),
  image_url: z.url({ protocol: /^https?$/ }).max(2048).optional(),
  interruption_level: z.enum(["passive", "active", "time-sensitive", "critical"]).optional(),
  priority: z.enum(["high", "normal"]).optional().describe("high = APNs 10 / FCM HIGH; normal = APNs 5 / FCM NORMAL"),
  ttl_seconds: z.number().int().min(0).max(28 * 86_400).optional().describe("drop the push if undeliverable for this long (0 = now or never)"),
  collapse_key: z.string().max(64).optional().describe("FCM collapse key"),
  click_action: z.string().max(512).optional(),
  android_channel_id: z.string().max(256).optional(),
};

/**
 * The options object as stored on a message; `expiration` is the absolute deadline (unix seconds)
 * derived from `ttl_seconds`, or {@link NOW_OR_NEVER} for ttl_seconds 0. `ttl_seconds` itself is
 * kept beside it (rows of earlier releases have only `expiration`).
 */
export type StoredPushOptions = Partial<{
  badge: number;
  sound: string;
  category: string;
  thread_id: string;
  mutable_content: boolean;
  image_url: string;
  interruption_level: PushMessage["interruptionLevel"];
  priority: PushMessage["priority"];
  expiration: number;
  ttl_seconds: number;
  collapse_key: string;
  click_action: string;
  android_channel_id: string;
}>;

/**
 * The stored `expiration` of ttl_seconds 0: APNs' own "attempt once, do not store" value, which the
 * FCM payload turns into ttl 0 too. Storing the acceptance second instead made "now or never"
 * indistinguishable from a short ttl that has run out.
 */
export const NOW_OR_NEVER = 0;

/** The absolute expiry of a message created at `createdAt` with `ttlSeconds` (absolute, so a retry an hour later does not extend its life). */
export function expirationOf(ttlSeconds: number, createdAt: Date): number {
  return ttlSeconds === 0 ? NOW_OR_NEVER : Math.floor(createdAt.getTime() / 1000) + ttlSeconds;
}

/** The message failure for a message whose ttl_seconds ran out before it could be sent (refunded: nothing was sent). */
export const MESSAGE_EXPIRED = {
  code: FAILURE_CODES.expired,
  message: "ttl_seconds ran out before the message could be sent (the provider kept failing until then)",
} as const;

/**
 * How long past its deadline a message's first attempt still goes out (as "now or never": APNs
 * expiration 0, FCM ttl 0). The way from the API to a worker takes a second or more across regions,
 * which a ttl of a few seconds did not survive; a first attempt later than this (a message whose
 * workflow the reconciler started after a Temporal outage) has missed its ttl like a late retry.
 */
export const FIRST_ATTEMPT_GRACE_MS = 30_000;

/**
 * Whether a message's ttl_seconds ran out before this attempt: it must not reach the device late, so
 * it fails with `expired` instead of going out. A retry (`attempts` > 0, after a provider failure)
 * expires at the deadline, the first attempt {@link FIRST_ATTEMPT_GRACE_MS} after it. Now-or-never
 * messages (ttl 0) go out on every attempt with expiration 0.
 */
export function expiredBeforeSend(options: StoredPushOptions | null | undefined, createdAt: Date, attempts: number, nowMs: number = Date.now()): boolean {
  if (attempts === 0) return expiredBeforeSend(options, createdAt, 1, nowMs - FIRST_ATTEMPT_GRACE_MS);
  const expiration = options?.expiration;
  if (expiration === undefined || expiration === NOW_OR_NEVER) return false;
  if (options?.ttl_seconds !== undefined) return options.ttl_seconds > 0 && nowMs >= expiration * 1000;
  // A row of an earlier release: its ttl 0 was stored as the acceptance second, which `createdAt`
  // (the database's clock, a little later or, across machines, a little earlier) tells apart only
  // with a second of slack, so its 1-second ttls count as now-or-never.
  if (expiration <= Math.floor(new Date(createdAt).getTime() / 1000) + 1) return false;
  return nowMs >= expiration * 1000;
}

/**
 * The options of a message sent again (resend): the same ttl, counted from `at` rather than from
 * the original's creation, whose deadline has usually passed. Rows of earlier releases give their
 * ttl back as expiration minus creation second.
 */
export function renewedPushOptions(options: StoredPushOptions | null | undefined, createdAt: Date, at: Date): StoredPushOptions {
  const { expiration, ttl_seconds: storedTtl, ...rest } = options ?? {};
  if (expiration === undefined) return rest;
  const ttl = storedTtl ?? Math.max(0, expiration - Math.floor(new Date(createdAt).getTime() / 1000));
  return { ...rest, ttl_seconds: ttl, expiration: expirationOf(ttl, at) };
}

/** Picks the push options out of a request body and fixes the expiry to an absolute time at acceptance. */
export function storedPushOptions(input: Partial<Record<keyof typeof PushOptionsShape, unknown>>, acceptedAt: Date): StoredPushOptions {
  const options: StoredPushOptions = {};
  for (const [key, value] of Object.entries(input)) if (value !== undefined && key in PushOptionsShape) (options as Record<string, unknown>)[key] = value;
  if (options.ttl_seconds !== undefined) options.expiration = expirationOf(options.ttl_seconds, acceptedAt);
  return options;
}

/** The request's (stored option's) name of each provider message field {@link toPushMessage} renames. */
const REQUEST_FIELD: Readonly<Record<string, string>> = {
  imageUrl: "image_url",
  threadId: "thread_id",
  mutableContent: "mutable_content",
  interruptionLevel: "interruption_level",
  collapseKey: "collapse_key",
  clickAction: "click_action",
  androidChannelId: "android_channel_id",
  expiration: "ttl_seconds",
};

/** The request field a provider message field came from, or undefined when the name is the same. */
export function requestFieldOf(pushMessageField: string): string | undefined {
  return REQUEST_FIELD[pushMessageField];
}

/** Builds the provider message for one device from a stored message. */
export function toPushMessage(
  message: { id: string; title: string | null; body: string | null; data: Record<string, unknown> | null; options: StoredPushOptions | null },
  token: string,
): PushMessage {
  const o = message.options ?? {};
  return {
    messageId: message.id,
    token,
    title: message.title ?? undefined,
    body: message.body ?? undefined,
    data: (message.data ?? {}) as PushMessage["data"],
    badge: o.badge,
    sound: o.sound,
    category: o.category,
    threadId: o.thread_id,
    mutableContent: o.mutable_content,
    imageUrl: o.image_url,
    interruptionLevel: o.interruption_level,
    priority: o.priority,
    expiration: o.expiration,
    collapseKey: o.collapse_key,
    clickAction: o.click_action,
    androidChannelId: o.android_channel_id,
  };
}
