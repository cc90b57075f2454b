import { z } from "zod";
import type { PushMessage } from "../providers";

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

/** The options object as stored on a message; `expiration` is the absolute deadline derived from ttl_seconds. */
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
  collapse_key: string;
  click_action: string;
  android_channel_id: string;
}>;

/** Picks the push options out of a request body and fixes the expiry to an absolute time at acceptance. */
export function storedPushOptions(input: Partial<Record<keyof typeof PushOptionsShape, unknown>>, acceptedAt: Date): StoredPushOptions {
  const { ttl_seconds: ttl, ...rest } = input as StoredPushOptions & { ttl_seconds?: number };
  const options: StoredPushOptions = {};
  for (const [key, value] of Object.entries(rest)) if (value !== undefined && key in PushOptionsShape) (options as Record<string, unknown>)[key] = value;
  // Absolute, so a retry an hour later does not extend the message's life.
  if (ttl !== undefined) options.expiration = Math.floor(acceptedAt.getTime() / 1000) + ttl;
  return options;
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
