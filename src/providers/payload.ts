/**
 * Pure builders for the bytes each provider receives. Validation and the adapters both call these,
 * so the size that validation measures is exactly the payload that goes on the wire.
 */
import crypto from "node:crypto";
import type { AndroidConfig, AndroidNotification, TokenMessage } from "firebase-admin/messaging";
import type { PushDataValue, PushMessage } from "./types";

/** Key carrying our message id in every payload (top level for APNs, `data` for FCM) so receipts can be matched. */
export const MESSAGE_ID_KEY = "automata_message_id";

/** APNs payload key for the rich-notification image that the app's service extension downloads. */
export const APNS_IMAGE_URL_KEY = "image_url";

/** Longest `apns-collapse-id` APNs accepts. */
export const APNS_COLLAPSE_ID_MAX_BYTES = 64;

/** The JSON body APNs receives: `aps` plus custom top-level keys. */
export interface ApnsPayload {
  aps: Record<string, unknown>;
  [key: string]: unknown;
}

/** Builds the APNs JSON body; custom data goes first so our own keys can never be shadowed. */
export function buildApnsPayload(message: PushMessage): ApnsPayload {
  const aps: Record<string, unknown> = {};
  if (message.title !== undefined || message.body !== undefined) {
    const alert: Record<string, string> = {};
    if (message.title !== undefined) alert.title = message.title;
    if (message.body !== undefined) alert.body = message.body;
    aps.alert = alert;
  }
  if (message.badge !== undefined) aps.badge = message.badge;
  if (message.sound !== undefined) aps.sound = message.sound;
  if (message.category !== undefined) aps.category = message.category;
  if (message.threadId !== undefined) aps["thread-id"] = message.threadId;
  // An image is only shown if the service extension runs, and it only runs with mutable-content.
  const mutable = message.mutableContent ?? (message.imageUrl !== undefined ? true : undefined);
  if (mutable !== undefined) aps["mutable-content"] = mutable ? 1 : 0;
  if (message.interruptionLevel !== undefined) aps["interruption-level"] = message.interruptionLevel;

  const payload: ApnsPayload = { aps };
  for (const [key, value] of Object.entries(message.data ?? {})) payload[key] = value;
  if (message.imageUrl !== undefined) payload[APNS_IMAGE_URL_KEY] = message.imageUrl;
  payload[MESSAGE_ID_KEY] = message.messageId;
  return payload;
}

/** UTF-8 size of the APNs body as sent. */
export function apnsPayloadBytes(message: PushMessage): number {
  return Buffer.byteLength(JSON.stringify(buildApnsPayload(message)), "utf8");
}

/** APNs collapse id for a message: the id itself, or its SHA-256 hex when longer than APNs allows (still deterministic, so redeliveries still collapse). */
export function apnsCollapseId(messageId: string): string {
  if (Buffer.byteLength(messageId, "utf8") <= APNS_COLLAPSE_ID_MAX_BYTES) return messageId;
  return crypto.createHash("sha256").update(messageId, "utf8").digest("hex");
}

/** FCM only carries string data values; objects become JSON so the app can parse them back. */
export function stringifyDataValue(value: PushDataValue): string {
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return JSON.stringify(value);
}

/** FCM `data` map: every custom value stringified plus {@link MESSAGE_ID_KEY}. */
export function buildFcmData(message: PushMessage): Record<string, string> {
  const data: Record<string, string> = {};
  for (const [key, value] of Object.entries(message.data ?? {})) data[key] = stringifyDataValue(value);
  data[MESSAGE_ID_KEY] = message.messageId;
  return data;
}

/** Builds the firebase-admin message; `nowSeconds` is injectable so the TTL derived from `expiration` is testable. */
export function buildFcmMessage(message: PushMessage, nowSeconds: number = Math.floor(Date.now() / 1000)): TokenMessage {
  const fcm: TokenMessage = { token: message.token, data: buildFcmData(message) };
  if (message.title !== undefined || message.body !== undefined || message.imageUrl !== undefined) {
    fcm.notification = {};
    if (message.title !== undefined) fcm.notification.title = message.title;
    if (message.body !== undefined) fcm.notification.body = message.body;
    if (message.imageUrl !== undefined) fcm.notification.imageUrl = message.imageUrl;
  }
  const android: AndroidConfig = {};
  if (message.priority !== undefined) android.priority = message.priority;
  if (message.expiration !== undefined) android.ttl = Math.max(0, message.expiration - nowSeconds) * 1000;
  if (message.collapseKey !== undefined) android.collapseKey = message.collapseKey;
  const notification: AndroidNotification = {};
  // The message id as the tag, like the APNs collapse id: a send repeated after a crash (the
  // provider accepted it, our commit was lost) replaces the shown notification instead of adding
  // a second one. Only a message with a notification has a drawer entry to replace.
  if (fcm.notification !== undefined) notification.tag = message.messageId;
  if (message.clickAction !== undefined) notification.clickAction = message.clickAction;
  if (message.androidChannelId !== undefined) notification.channelId = message.androidChannelId;
  if (message.sound !== undefined) notification.sound = message.sound;
  if (Object.keys(notification).length > 0) android.notification = notification;
  if (Object.keys(android).length > 0) fcm.android = android;
  return fcm;
}

/**
 * FCM's 4096-byte limit counts the keys and values of `data` plus the notification text (FCM docs),
 * not JSON framing, so that is what we count.
 */
export function fcmPayloadBytes(message: PushMessage): number {
  let bytes = 0;
  for (const [key, value] of Object.entries(buildFcmData(message))) {
    bytes += Buffer.byteLength(key, "utf8") + Buffer.byteLength(value, "utf8");
  }
  for (const text of [message.title, message.body, message.imageUrl]) {
    if (text !== undefined) bytes += Buffer.byteLength(text, "utf8");
  }
  return bytes;
}
