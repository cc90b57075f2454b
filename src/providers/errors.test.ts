import { test } from "node:test";
import assert from "node:assert/strict";
import { errors as undiciErrors } from "undici";
import type * as Apns2 from "apns2" with { "resolution-mode": "require" };
import {
  APNS_REASON_RULES,
  APNS_STATUS_RULES,
  FCM_CODE_RULES,
  FCM_MESSAGE_REFINEMENTS,
  NETWORK_ERROR_REASONS,
  SUBSCRIPTION_STATUS,
  classifyApnsError,
  classifyFcmError,
  parseRetryAfter,
} from "./errors";
import type { FailureOutcome } from "./types";

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { ApnsError, Notification } = require("apns2") as typeof Apns2;

function apnsError(statusCode: number, reason: string, timestamp?: number): Error {
  return new ApnsError({ statusCode, notification: new Notification("tok"), response: { reason, timestamp: timestamp ?? Date.now() } });
}

function fcmError(code: string, message = "boom"): Error {
  return Object.assign(new Error(message), { code });
}

function codedError(code: string, message = code): Error {
  return Object.assign(new Error(message), { code });
}

type Expect = Partial<{ kind: string; reason: string; class: string; subscriptionStatus: number | undefined; code: string; retryAfterMs: number }>;

function check(outcome: FailureOutcome, expected: Expect, label: string): void {
  for (const [key, value] of Object.entries(expected)) {
    assert.deepEqual((outcome as unknown as Record<string, unknown>)[key], value, `${label}: ${key}`);
  }
}

const APNS_CASES: Array<[status: number, reason: string, expected: Expect]> = [
  [400, "BadDeviceToken", { kind: "permanent", reason: "invalid_token", subscriptionStatus: -10 }],
  [410, "Unregistered", { kind: "permanent", reason: "unregistered", subscriptionStatus: -10 }],
  [410, "ExpiredToken", { kind: "permanent", reason: "unregistered", subscriptionStatus: -10 }],
  [400, "DeviceTokenNotForTopic", { kind: "permanent", reason: "token_topic_mismatch", subscriptionStatus: -14 }],
  [400, "TopicDisallowed", { kind: "permanent", reason: "provider_config_invalid", subscriptionStatus: undefined }],
  [400, "BadTopic", { kind: "permanent", reason: "provider_config_invalid", subscriptionStatus: undefined }],
  [413, "PayloadTooLarge", { kind: "permanent", reason: "message_too_large", subscriptionStatus: undefined }],
  [400, "BadCollapseId", { kind: "permanent", reason: "invalid_message_content" }],
  [403, "InvalidProviderToken", { kind: "permanent", reason: "provider_auth_failed", subscriptionStatus: undefined }],
  [403, "ExpiredProviderToken", { kind: "temporary", class: "network", reason: "expired_provider_token" }],
  [403, "MissingProviderToken", { kind: "permanent", reason: "provider_auth_failed" }],
  [429, "TooManyRequests", { kind: "temporary", class: "rate_limited" }],
  [429, "TooManyProviderTokenUpdates", { kind: "temporary", class: "rate_limited" }],
  [500, "InternalServerError", { kind: "temporary", class: "provider_outage" }],
  [503, "ServiceUnavailable", { kind: "temporary", class: "provider_outage" }],
  [503, "Shutdown", { kind: "temporary", class: "provider_outage" }],
  [502, "UnknownError", { kind: "temporary", class: "provider_outage" }],
  // Unknown reasons fall back to the HTTP status.
  [410, "SomeNewReason", { kind: "permanent", reason: "unregistered", subscriptionStatus: -10 }],
  [403, "SomeNewReason", { kind: "permanent", reason: "provider_auth_failed" }],
  [504, "SomeNewReason", { kind: "temporary", class: "provider_outage" }],
  [400, "SomeNewReason", { kind: "permanent", reason: "unclassified_error" }],
];

test("APNs errors classify by reason, then by status", () => {
  for (const [status, reason, expected] of APNS_CASES) {
    const outcome = classifyApnsError(apnsError(status, reason));
    check(outcome, { ...expected, code: reason }, `${status} ${reason}`);
  }
});

test("every APNs table row is reachable and matches its own rule", () => {
  for (const [reason, rule] of Object.entries(APNS_REASON_RULES)) {
    const outcome = classifyApnsError(apnsError(400, reason));
    assert.equal(outcome.kind, rule.kind, reason);
    if (rule.kind === "permanent" && outcome.kind === "permanent") assert.equal(outcome.subscriptionStatus, rule.subscriptionStatus, reason);
  }
  assert.ok(Object.keys(APNS_STATUS_RULES).length > 0);
});

test("Unregistered keeps Apple's timestamp in the detail", () => {
  const outcome = classifyApnsError(apnsError(410, "Unregistered", Date.UTC(2024, 0, 2)));
  assert.equal(outcome.kind, "permanent");
  assert.match(outcome.kind === "permanent" ? outcome.detail : "", /2024-01-02T00:00:00.000Z/);
});

test("Retry-After is honoured for rate limits and outages but never for network failures", () => {
  check(classifyApnsError(apnsError(429, "TooManyRequests"), { retryAfter: "7" }), { retryAfterMs: 7000 }, "seconds");
  check(classifyApnsError(apnsError(503, "ServiceUnavailable"), { retryAfter: ["2"] }), { retryAfterMs: 2000 }, "array");
  const socket = classifyApnsError(new undiciErrors.SocketError("other side closed"), { retryAfter: "5" });
  assert.equal(socket.kind === "temporary" ? socket.retryAfterMs : "n/a", undefined);
  assert.equal("retryAfterMs" in classifyApnsError(apnsError(429, "TooManyRequests")), false, "no header, no retryAfterMs");
});

test("parseRetryAfter handles delta-seconds, HTTP dates and garbage", () => {
  const now = Date.UTC(2025, 0, 1, 0, 0, 0);
  const cases: Array<[string | string[] | number | undefined, number | undefined]> = [
    ["0", 0],
    ["1", 1000],
    [" 120 ", 120_000],
    ["1.5", 1500],
    [3, 3000],
    [["4", "9"], 4000],
    [new Date(now + 10_000).toUTCString(), 10_000],
    [new Date(now - 10_000).toUTCString(), 0],
    ["soon", undefined],
    ["", undefined],
    [undefined, undefined],
    [-1, undefined],
  ];
  for (const [input, expected] of cases) assert.equal(parseRetryAfter(input, now), expected, JSON.stringify(input));
});

const NETWORK_CASES: Array<[label: string, err: unknown, reason: string]> = [
  ["undici SocketError", new undiciErrors.SocketError("other side closed"), "socket_error"],
  ["undici headers timeout", new undiciErrors.HeadersTimeoutError(), "timeout"],
  ["undici connect timeout", new undiciErrors.ConnectTimeoutError(), "timeout"],
  ["undici closed pool", new undiciErrors.ClientClosedError(), "provider_closed"],
  ["undici HTTP/2 stream closed early", new undiciErrors.InformationalError("HTTP/2: stream closed before the response was complete"), "stream_reset"],
  ["HTTP/2 stream reset", codedError("ERR_HTTP2_STREAM_ERROR", "Stream closed with error code NGHTTP2_INTERNAL_ERROR"), "stream_reset"],
  ["HTTP/2 goaway", codedError("ERR_HTTP2_GOAWAY_SESSION"), "http2_error"],
  ["ECONNRESET", codedError("ECONNRESET"), "connection_reset"],
  ["ECONNREFUSED", codedError("ECONNREFUSED"), "connection_refused"],
  ["bad certificate", codedError("UNABLE_TO_VERIFY_LEAF_SIGNATURE"), "tls_error"],
  ["DNS guard", codedError("EDNSGUARD"), "dns_blocked"],
  ["wrapped cause", new TypeError("fetch failed", { cause: codedError("ECONNRESET") }), "connection_reset"],
  ["abort", Object.assign(new Error("aborted"), { name: "AbortError" }), "aborted"],
];

test("transport failures are temporary network errors for both providers", () => {
  for (const [label, err, reason] of NETWORK_CASES) {
    check(classifyApnsError(err), { kind: "temporary", class: "network", reason }, `apns ${label}`);
    check(classifyFcmError(err), { kind: "temporary", class: "network", reason }, `fcm ${label}`);
  }
  for (const code of Object.keys(NETWORK_ERROR_REASONS)) {
    assert.equal(classifyApnsError(codedError(code)).kind, "temporary", code);
  }
});

const FCM_CASES: Array<[code: string, message: string, expected: Expect]> = [
  ["messaging/registration-token-not-registered", "Requested entity was not found.", { kind: "permanent", reason: "unregistered", subscriptionStatus: -10 }],
  ["messaging/invalid-argument", "The registration token is not a valid FCM registration token", { kind: "permanent", reason: "invalid_token", subscriptionStatus: -4 }],
  ["messaging/invalid-argument", "Invalid value at 'message.android.ttl'", { kind: "permanent", reason: "invalid_message_content", subscriptionStatus: undefined }],
  ["messaging/invalid-registration-token", "bad token", { kind: "permanent", reason: "invalid_token", subscriptionStatus: -4 }],
  ["messaging/mismatched-credential", "SenderId mismatch", { kind: "permanent", reason: "sender_id_mismatch", subscriptionStatus: -6 }],
  ["messaging/mismatched-credential", "Permission 'cloudmessaging.messages.create' denied", { kind: "permanent", reason: "provider_auth_failed", subscriptionStatus: undefined }],
  ["messaging/mismatched-credential", "Firebase Cloud Messaging API has not been used in project 1234 before or it is disabled.", { kind: "permanent", reason: "provider_auth_failed", subscriptionStatus: undefined }],
  ["messaging/mismatched-credential", "Request had insufficient authentication scopes.", { kind: "permanent", reason: "provider_auth_failed", subscriptionStatus: undefined }],
  ["app/app-deleted", "Firebase app named \"x\" has already been deleted.", { kind: "temporary", class: "network" }],
  ["messaging/third-party-auth-error", "Request had invalid authentication credentials", { kind: "permanent", reason: "provider_auth_failed", subscriptionStatus: undefined }],
  ["messaging/authentication-error", "401", { kind: "permanent", reason: "provider_auth_failed", subscriptionStatus: undefined }],
  ["messaging/payload-size-limit-exceeded", "too big", { kind: "permanent", reason: "message_too_large" }],
  ["messaging/message-rate-exceeded", "Quota exceeded", { kind: "temporary", class: "rate_limited" }],
  ["messaging/device-message-rate-exceeded", "device", { kind: "temporary", class: "rate_limited" }],
  ["messaging/server-unavailable", "unavailable", { kind: "temporary", class: "provider_outage" }],
  ["messaging/internal-error", "internal", { kind: "temporary", class: "provider_outage" }],
  ["messaging/unknown-error", "502 <html>", { kind: "temporary", class: "provider_outage" }],
  ["app/network-error", "Error while making request: socket hang up. Error code: ECONNRESET", { kind: "temporary", class: "network" }],
  ["app/network-timeout", "timeout of 15000ms exceeded", { kind: "temporary", class: "network" }],
  ["app/invalid-credential", "failed to fetch: getaddrinfo EAI_AGAIN oauth2.googleapis.com", { kind: "temporary", class: "network" }],
  ["app/invalid-credential", 'Error fetching access token: invalid_grant (Invalid JWT Signature.)', { kind: "permanent", reason: "provider_auth_failed" }],
];

test("FCM errors classify by firebase-admin code with message refinements", () => {
  for (const [code, message, expected] of FCM_CASES) {
    check(classifyFcmError(fcmError(code, message)), { ...expected, code }, `${code} / ${message}`);
  }
  check(classifyFcmError(fcmError("messaging/message-rate-exceeded"), { retryAfter: 30 }), { retryAfterMs: 30_000 }, "fcm retry-after");
});

test("every FCM table row and refinement is reachable", () => {
  for (const [code, rule] of Object.entries(FCM_CODE_RULES)) {
    const outcome = classifyFcmError(fcmError(code, "plain message"));
    assert.equal(outcome.kind, rule.kind, code);
  }
  for (const refinement of FCM_MESSAGE_REFINEMENTS) {
    const sample = refinement.pattern.source.split("|")[0]!.replace(/\\/g, "");
    const outcome = classifyFcmError(fcmError(refinement.code, `x ${sample} y`));
    assert.equal(outcome.kind, refinement.rule.kind, refinement.code);
    if (refinement.rule.kind === "permanent" && outcome.kind === "permanent") assert.equal(outcome.reason, refinement.rule.reason);
  }
});

test("auth failures never touch the subscription; every status written is in REF-002's push range", () => {
  const rules = [...Object.values(APNS_REASON_RULES), ...Object.values(APNS_STATUS_RULES), ...Object.values(FCM_CODE_RULES), ...FCM_MESSAGE_REFINEMENTS.map((r) => r.rule)];
  for (const rule of rules) {
    if (rule.kind !== "permanent") continue;
    if (rule.reason === "provider_auth_failed" || rule.reason === "provider_config_invalid" || rule.reason === "message_too_large") {
      assert.equal(rule.subscriptionStatus, undefined, rule.reason);
    }
    if (rule.subscriptionStatus !== undefined) assert.ok(rule.subscriptionStatus <= -3 && rule.subscriptionStatus >= -24, String(rule.subscriptionStatus));
  }
  assert.deepEqual(Object.values(SUBSCRIPTION_STATUS).sort((a, b) => a - b), [-14, -10, -6, -4, -3]);
});

test("unknown exceptions are permanent 'unclassified_error' (likely our bug; retrying would hide it)", () => {
  check(classifyApnsError(new TypeError("x is not a function")), { kind: "permanent", reason: "unclassified_error", code: "TypeError" }, "apns");
  check(classifyFcmError("a string"), { kind: "permanent", reason: "unclassified_error", code: "unknown" }, "fcm string");
  check(classifyFcmError(fcmError("messaging/some-new-code")), { kind: "permanent", reason: "unclassified_error" }, "unknown fcm code");
  check(classifyApnsError(codedError("FAST_JWT_INVALID_KEY")), { kind: "permanent", reason: "provider_auth_failed" }, "bad .p8");
});
