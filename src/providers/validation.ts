/**
 * Pure message validation (COMP-002 validate_message), shared by the adapters and, later, the API so
 * a message is rejected at the door with the same rules the adapter would apply at send time.
 */
import { APNS_IMAGE_URL_KEY, MESSAGE_ID_KEY, apnsPayloadBytes, fcmPayloadBytes } from "./payload";
import type { PermanentOutcome, PushMessage, ValidationIssue, ValidationIssueCode } from "./types";

/** COMP-002: title limit in UTF-8 bytes. */
export const TITLE_MAX_BYTES = 150;
/** COMP-002: body limit in UTF-8 bytes. */
export const BODY_MAX_BYTES = 4000;
/** APNs rejects bodies over 4 KB with 413 PayloadTooLarge (VoIP's 5 KB is not used here). */
export const APNS_PAYLOAD_MAX_BYTES = 4096;
/** FCM's limit on data keys+values plus notification text. */
export const FCM_PAYLOAD_MAX_BYTES = 4096;

/** All limits in one object, for docs and API error details. */
export const PUSH_LIMITS = {
  titleMaxBytes: TITLE_MAX_BYTES,
  bodyMaxBytes: BODY_MAX_BYTES,
  apnsPayloadMaxBytes: APNS_PAYLOAD_MAX_BYTES,
  fcmPayloadMaxBytes: FCM_PAYLOAD_MAX_BYTES,
} as const;

/** Data keys FCM refuses (FCM docs: "from", "message_type", or anything starting with "google" or "gcm"). */
export const FCM_RESERVED_DATA_KEY = /^(from|message_type|google.*|gcm.*)$/i;

/** Which provider's rules to apply. */
export type PushPlatform = "apns" | "fcm";

const PRIORITIES = new Set(["high", "normal"]);
const INTERRUPTION_LEVELS = new Set(["passive", "active", "time-sensitive", "critical"]);
const OPTIONAL_STRINGS = ["sound", "category", "threadId", "collapseKey", "clickAction", "androidChannelId"] as const;

function issue(code: ValidationIssueCode, field: string, message: string): ValidationIssue {
  return { code, field, message };
}

function bytes(text: string): number {
  return Buffer.byteLength(text, "utf8");
}

function isNonEmptyString(value: unknown): value is string {
  return typeof value === "string" && value.length > 0;
}

/** Rules every push platform shares (COMP-002 §3.1 plus type checks on the options). */
export function validateCommon(message: PushMessage): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  if (!isNonEmptyString(message.messageId)) issues.push(issue("invalid_message_content", "messageId", "messageId is required"));
  if (!isNonEmptyString(message.token)) issues.push(issue("invalid_message_content", "token", "a push token is required"));

  const hasTitle = isNonEmptyString(message.title);
  const hasBody = isNonEmptyString(message.body);
  if (!hasTitle && !hasBody) issues.push(issue("invalid_message_content", "title", "title and body cannot both be empty"));
  if (message.title !== undefined && typeof message.title !== "string") issues.push(issue("invalid_message_content", "title", "title must be a string"));
  if (message.body !== undefined && typeof message.body !== "string") issues.push(issue("invalid_message_content", "body", "body must be a string"));
  if (typeof message.title === "string" && bytes(message.title) > TITLE_MAX_BYTES) {
    issues.push(issue("message_too_large", "title", `title is ${bytes(message.title)} bytes; the limit is ${TITLE_MAX_BYTES}`));
  }
  if (typeof message.body === "string" && bytes(message.body) > BODY_MAX_BYTES) {
    issues.push(issue("message_too_large", "body", `body is ${bytes(message.body)} bytes; the limit is ${BODY_MAX_BYTES}`));
  }

  if (message.badge !== undefined && !(Number.isInteger(message.badge) && message.badge >= 0)) {
    issues.push(issue("invalid_message_content", "badge", "badge must be a non-negative integer"));
  }
  if (message.priority !== undefined && !PRIORITIES.has(message.priority)) {
    issues.push(issue("invalid_message_content", "priority", "priority must be 'high' or 'normal'"));
  }
  if (message.interruptionLevel !== undefined && !INTERRUPTION_LEVELS.has(message.interruptionLevel)) {
    issues.push(issue("invalid_message_content", "interruptionLevel", "interruptionLevel must be passive, active, time-sensitive or critical"));
  }
  if (message.expiration !== undefined && !(Number.isInteger(message.expiration) && message.expiration >= 0)) {
    issues.push(issue("invalid_message_content", "expiration", "expiration must be unix epoch seconds (integer >= 0)"));
  }
  if (message.mutableContent !== undefined && typeof message.mutableContent !== "boolean") {
    issues.push(issue("invalid_message_content", "mutableContent", "mutableContent must be a boolean"));
  }
  for (const field of OPTIONAL_STRINGS) {
    const value = message[field];
    if (value !== undefined && typeof value !== "string") issues.push(issue("invalid_message_content", field, `${field} must be a string`));
  }
  if (message.imageUrl !== undefined && !isHttpUrl(message.imageUrl)) {
    issues.push(issue("invalid_message_content", "imageUrl", "imageUrl must be an http(s) URL"));
  }
  issues.push(...validateData(message));
  return issues;
}

/**
 * firebase-admin's own URL rule (validator.isURL, 13.x), which it applies to notification image
 * URLs before sending: a URL the WHATWG parser takes but this refuses (non-ASCII, spaces, `_` in
 * the host, `//` in the path) failed every Android copy after the API had accepted it. Not
 * imported: firebase-admin does not export its validator; validation.test.ts checks the two agree.
 */
export function isFcmUrl(value: string): boolean {
  if (/[^a-z0-9:/?#[\]@!$&'()*+,;=.\-_~%]/i.test(value) || !URL.canParse(value)) return false;
  const url = new URL(value);
  if (url.protocol !== "http:" && url.protocol !== "https:") return false;
  const hostname = /^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*$/;
  if (!hostname.test(url.hostname) && !/^\[[a-fA-F0-9:.]+\]$/.test(url.hostname)) return false;
  return url.pathname === "" || url.pathname === "/" || /^(\/[\w\-.~!$'()*+,;=:@%]+)*\/?$/.test(url.pathname);
}

function isHttpUrl(value: unknown): boolean {
  if (typeof value !== "string" || !URL.canParse(value)) return false;
  const protocol = new URL(value).protocol;
  return protocol === "https:" || protocol === "http:";
}

function validateData(message: PushMessage): ValidationIssue[] {
  const data: unknown = message.data;
  if (data === undefined) return [];
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    return [issue("invalid_message_content", "data", "data must be an object")];
  }
  return dataEntryIssues(data as Record<string, unknown>);
}

/**
 * The data keys and values no provider accepts (a reserved key, a null or non-finite value); the
 * platform-specific reserved keys are checked per platform. Templates check their data template
 * with this when saved, so a template cannot be stored that no send could use.
 */
export function dataEntryIssues(data: Record<string, unknown>): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  for (const [key, value] of Object.entries(data)) {
    if (key === MESSAGE_ID_KEY) issues.push(issue("invalid_message_content", `data.${key}`, `${MESSAGE_ID_KEY} is reserved`));
    const ok =
      typeof value === "string" ||
      typeof value === "boolean" ||
      (typeof value === "number" && Number.isFinite(value)) ||
      (typeof value === "object" && value !== null);
    if (!ok) issues.push(issue("invalid_message_content", `data.${key}`, "data values must be strings, finite numbers, booleans or objects"));
  }
  return issues;
}

/** APNs-only rules: reserved top-level keys and the 4 KB body. */
export function validateApnsMessage(message: PushMessage): ValidationIssue[] {
  const issues = validateCommon(message);
  const data = message.data ?? {};
  if (typeof data === "object" && data !== null) {
    if (Object.prototype.hasOwnProperty.call(data, "aps")) issues.push(issue("invalid_message_content", "data.aps", "aps is reserved by APNs"));
    if (message.imageUrl !== undefined && Object.prototype.hasOwnProperty.call(data, APNS_IMAGE_URL_KEY)) {
      issues.push(issue("invalid_message_content", `data.${APNS_IMAGE_URL_KEY}`, `${APNS_IMAGE_URL_KEY} is set from imageUrl`));
    }
  }
  if (issues.length > 0) return issues;
  const size = measure(() => apnsPayloadBytes(message));
  if (typeof size === "string") return [issue("invalid_message_content", "data", size)];
  if (size > APNS_PAYLOAD_MAX_BYTES) {
    issues.push(issue("message_too_large", "payload", `APNs payload is ${size} bytes; the limit is ${APNS_PAYLOAD_MAX_BYTES}`));
  }
  return issues;
}

/** FCM-only rules: reserved data keys and the 4 KB payload. */
export function validateFcmMessage(message: PushMessage): ValidationIssue[] {
  const issues = validateCommon(message);
  const data = message.data ?? {};
  if (typeof data === "object" && data !== null) {
    for (const key of Object.keys(data)) {
      if (FCM_RESERVED_DATA_KEY.test(key)) issues.push(issue("invalid_message_content", `data.${key}`, `"${key}" is a reserved FCM data key`));
    }
  }
  if (typeof message.imageUrl === "string" && isHttpUrl(message.imageUrl) && !isFcmUrl(message.imageUrl)) {
    issues.push(issue("invalid_message_content", "imageUrl", "imageUrl must be a plain ASCII URL for FCM (percent-encode spaces and non-ASCII; no '_' in the host name)"));
  }
  if (issues.length > 0) return issues;
  const size = measure(() => fcmPayloadBytes(message));
  if (typeof size === "string") return [issue("invalid_message_content", "data", size)];
  if (size > FCM_PAYLOAD_MAX_BYTES) {
    issues.push(issue("message_too_large", "payload", `FCM payload is ${size} bytes; the limit is ${FCM_PAYLOAD_MAX_BYTES}`));
  }
  return issues;
}

/** Validates for the given platforms (default both — the API does not know the device mix yet); issues are de-duplicated. */
export function validatePushMessage(message: PushMessage, platforms: readonly PushPlatform[] = ["apns", "fcm"]): ValidationIssue[] {
  const seen = new Set<string>();
  const all: ValidationIssue[] = [];
  for (const platform of platforms) {
    for (const found of platform === "apns" ? validateApnsMessage(message) : validateFcmMessage(message)) {
      const key = `${found.code}|${found.field}|${found.message}`;
      if (!seen.has(key)) {
        seen.add(key);
        all.push(found);
      }
    }
  }
  return all;
}

/** Turns validation issues into the permanent outcome a send returns without touching the network. */
export function outcomeFromIssues(issues: readonly ValidationIssue[]): PermanentOutcome {
  const tooLarge = issues.some((i) => i.code === "message_too_large");
  return {
    kind: "permanent",
    reason: tooLarge ? "message_too_large" : "invalid_message_content",
    code: "validation",
    detail: issues.map((i) => `${i.field}: ${i.message}`).join("; "),
  };
}

// JSON.stringify throws on cycles and BigInt inside data objects; that is a content error, reported as such.
function measure(fn: () => number): number | string {
  try {
    return fn();
  } catch (error) {
    return `data cannot be encoded as JSON: ${(error as Error).message}`;
  }
}
