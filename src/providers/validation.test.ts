import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import {
  APNS_PAYLOAD_MAX_BYTES,
  BODY_MAX_BYTES,
  FCM_PAYLOAD_MAX_BYTES,
  PUSH_LIMITS,
  TITLE_MAX_BYTES,
  outcomeFromIssues,
  isFcmUrl,
  validateApnsMessage,
  validateFcmMessage,
  validatePushMessage,
} from "./validation";
import type { PushMessage } from "./types";

const base: PushMessage = { messageId: "m-1", token: "tok", title: "Hello", body: "World" };
const msg = (overrides: Partial<PushMessage> | Record<string, unknown>): PushMessage => ({ ...base, ...overrides }) as PushMessage;

// [label, message, expected issue codes+fields for (apns, fcm)]
type Case = [label: string, message: PushMessage, apns: string[], fcm: string[]];

const CASES: Case[] = [
  ["valid", base, [], []],
  ["title only", msg({ body: undefined }), [], []],
  ["body only", msg({ title: undefined }), [], []],
  ["title exactly at limit", msg({ title: "a".repeat(TITLE_MAX_BYTES) }), [], []],
  ["title over limit", msg({ title: "a".repeat(TITLE_MAX_BYTES + 1) }), ["message_too_large:title"], ["message_too_large:title"]],
  // 50 × 3-byte chars = 150 bytes (ok); 51 = 153 bytes: the limit is bytes, not characters.
  ["multibyte title at limit", msg({ title: "한".repeat(50) }), [], []],
  ["multibyte title over limit", msg({ title: "한".repeat(51) }), ["message_too_large:title"], ["message_too_large:title"]],
  ["body over limit", msg({ body: "b".repeat(BODY_MAX_BYTES + 1) }), ["message_too_large:body"], ["message_too_large:body"]],
  ["no content", msg({ title: undefined, body: undefined }), ["invalid_message_content:title"], ["invalid_message_content:title"]],
  ["empty strings are no content", msg({ title: "", body: "" }), ["invalid_message_content:title"], ["invalid_message_content:title"]],
  ["missing token", msg({ token: "" }), ["invalid_message_content:token"], ["invalid_message_content:token"]],
  ["missing message id", msg({ messageId: "" }), ["invalid_message_content:messageId"], ["invalid_message_content:messageId"]],
  ["negative badge", msg({ badge: -1 }), ["invalid_message_content:badge"], ["invalid_message_content:badge"]],
  ["fractional badge", msg({ badge: 1.5 }), ["invalid_message_content:badge"], ["invalid_message_content:badge"]],
  ["bad priority", msg({ priority: "urgent" }), ["invalid_message_content:priority"], ["invalid_message_content:priority"]],
  ["bad interruption level", msg({ interruptionLevel: "loud" }), ["invalid_message_content:interruptionLevel"], ["invalid_message_content:interruptionLevel"]],
  ["fractional expiration", msg({ expiration: 1.5 }), ["invalid_message_content:expiration"], ["invalid_message_content:expiration"]],
  ["non-http image", msg({ imageUrl: "ftp://x/y.png" }), ["invalid_message_content:imageUrl"], ["invalid_message_content:imageUrl"]],
  ["not a URL", msg({ imageUrl: "nope" }), ["invalid_message_content:imageUrl"], ["invalid_message_content:imageUrl"]],
  ["non-string sound", msg({ sound: 3 }), ["invalid_message_content:sound"], ["invalid_message_content:sound"]],
  ["reserved automata_message_id", msg({ data: { automata_message_id: "x" } }), ["invalid_message_content:data.automata_message_id"], ["invalid_message_content:data.automata_message_id"]],
  ["APNs reserves aps", msg({ data: { aps: {} } }), ["invalid_message_content:data.aps"], []],
  ["image_url clashes with imageUrl on APNs", msg({ imageUrl: "https://x/y.png", data: { image_url: "z" } }), ["invalid_message_content:data.image_url"], []],
  ["FCM reserves from/google*/gcm*", msg({ data: { from: "x", "google.c": "y", gcm_x: "z" } }), [], ["invalid_message_content:data.from", "invalid_message_content:data.google.c", "invalid_message_content:data.gcm_x"]],
  ["data must be an object", msg({ data: ["a"] }), ["invalid_message_content:data"], ["invalid_message_content:data"]],
  ["undefined data value", msg({ data: { a: undefined } }), ["invalid_message_content:data.a"], ["invalid_message_content:data.a"]],
  ["NaN data value", msg({ data: { a: Number.NaN } }), ["invalid_message_content:data.a"], ["invalid_message_content:data.a"]],
  ["BigInt inside an object cannot be encoded", msg({ data: { a: { n: BigInt(1) } } }), ["invalid_message_content:data"], ["invalid_message_content:data"]],
  ["nested objects are fine", msg({ data: { a: { b: [1, 2] }, c: true, d: 1 } }), [], []],
];

const keys = (issues: { code: string; field: string }[]) => issues.map((i) => `${i.code}:${i.field}`);

test("validation table: APNs and FCM rules", () => {
  for (const [label, message, apns, fcm] of CASES) {
    assert.deepEqual(keys(validateApnsMessage(message)), apns, `apns: ${label}`);
    assert.deepEqual(keys(validateFcmMessage(message)), fcm, `fcm: ${label}`);
  }
});

test("computed APNs payload over 4096 bytes is message_too_large even when each field is within limits", () => {
  const message = msg({ title: "t".repeat(150), body: "b".repeat(3900), data: { extra: "x".repeat(100) } });
  assert.deepEqual(keys(validateApnsMessage(message)), ["message_too_large:payload"]);
  const justFits = msg({ title: undefined, body: "b".repeat(4000) });
  assert.deepEqual(validateApnsMessage(justFits), [], "4000-byte body alone fits in 4096 with the envelope");
});

test("FCM payload counts data keys+values and notification text", () => {
  const over = msg({ title: undefined, body: "b".repeat(4000), data: { k: "v".repeat(100) } });
  assert.deepEqual(keys(validateFcmMessage(over)), ["message_too_large:payload"]);
  const numbersCountAsText = msg({ data: { n: 123456 } });
  assert.deepEqual(validateFcmMessage(numbersCountAsText), []);
});

test("validatePushMessage merges both platforms without duplicates", () => {
  const issues = validatePushMessage(msg({ title: "a".repeat(200), data: { aps: 1, from: 2 } }));
  assert.deepEqual(keys(issues), ["message_too_large:title", "invalid_message_content:data.aps", "invalid_message_content:data.from"]);
  assert.deepEqual(validatePushMessage(base, ["fcm"]), []);
});

test("issues become a permanent outcome; too-large wins the reason", () => {
  const outcome = outcomeFromIssues(validatePushMessage(msg({ title: "a".repeat(200), badge: -1 })));
  assert.equal(outcome.kind, "permanent");
  assert.equal(outcome.reason, "message_too_large");
  assert.equal(outcome.code, "validation");
  assert.equal(outcome.subscriptionStatus, undefined);
  assert.match(outcome.detail, /title: .*; badge: /);
});

test("limits are exported for docs and the API", () => {
  assert.deepEqual(PUSH_LIMITS, { titleMaxBytes: 150, bodyMaxBytes: 4000, apnsPayloadMaxBytes: APNS_PAYLOAD_MAX_BYTES, fcmPayloadMaxBytes: FCM_PAYLOAD_MAX_BYTES });
  assert.equal(APNS_PAYLOAD_MAX_BYTES, 4096);
  assert.equal(FCM_PAYLOAD_MAX_BYTES, 4096);
});

test("FCM image URLs follow firebase-admin's own rule, so the API refuses what its client would refuse after acceptance", () => {
  // firebase-admin does not export its validator; loaded by file here only to check we agree with it.
  const adminLib = path.dirname(require.resolve("firebase-admin"));
  const admin = require(path.join(adminLib, "utils", "validator.js")) as { isURL(value: unknown): boolean };
  const cases: Array<[url: string, fcm: boolean]> = [
    ["https://cdn.example.com/i.png", true],
    ["http://cdn.example.com/a/b-c_d.png?x=1&y=%20#top", true],
    ["https://example.com/", true],
    ["https://[::1]:8443/i.png", true],
    ["https://example.com/이미지.png", false],
    ["https://example.com/a b.png", false],
    ["https://my_cdn.example.com/a.png", false],
    ["https://example.com/a//b.png", false],
    ["https://example.com/a|b.png", false],
    ["https://example.com/\"q\".png", false],
    ["https://-bad.example.com/x.png", false],
  ];
  for (const [url, expected] of cases) {
    assert.equal(isFcmUrl(url), expected, url);
    assert.equal(admin.isURL(url), expected, `firebase-admin disagrees on ${url}`);
  }
  const refused = validateFcmMessage(msg({ imageUrl: "https://my_cdn.example.com/a.png" }));
  assert.deepEqual(refused.map((i) => `${i.code}:${i.field}`), ["invalid_message_content:imageUrl"]);
  assert.deepEqual(validateApnsMessage(msg({ imageUrl: "https://my_cdn.example.com/a.png" })), [], "APNs hands the URL to the app's extension as it is");
});
