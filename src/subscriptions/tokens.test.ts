import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { maskToken, normalizeToken } from "./tokens";
import type { SubscriptionType } from "./schemas";

const APNS_TOKEN = "a".repeat(32) + "0123456789abcdef0123456789abcdef";
const FCM_TOKEN = "dXN1c2VyOjEyMzQ1Njc4OTA:APA91bH-abc_DEF123";

/** [type, input, normalised form or null when invalid]. */
const CASES: Array<[SubscriptionType, string, string | null]> = [
  ["iOSPush", APNS_TOKEN, APNS_TOKEN],
  ["iOSPush", "ok-0123abcd", "ok-0123abcd"],
  ["iOSPush", "gone-0123abcd", "gone-0123abcd"],
  ["iOSPush", `  ${APNS_TOKEN}  `, APNS_TOKEN],
  ["iOSPush", "short", null],
  ["iOSPush", "has space inside", null],
  ["iOSPush", "x".repeat(4097), null],
  ["AndroidPush", FCM_TOKEN, FCM_TOKEN],
  ["AndroidPush", "token/with/slash", null],
  ["InAppMessage", "install-0123456789", "install-0123456789"],
  ["Email", "User@Example.com", "user@example.com"],
  ["Email", "first.last+tag@mail.example.co.kr", "first.last+tag@mail.example.co.kr"],
  ["Email", "not-an-email", null],
  ["Email", "two@@example.com", null],
  ["Email", "user@localhost", null],
  ["Email", APNS_TOKEN, null],
  ["SMS", "+821012345678", "+821012345678"],
  ["SMS", "+82 10-1234-5678", "+821012345678"],
  ["SMS", "01012345678", null],
  ["SMS", "+0123456789", null],
  ["SMS", "+1234567890123456", null],
  ["KakaoTalk", "+82 (10) 1234 5678", "+821012345678"],
  ["KakaoTalk", "user@example.com", null],
];

describe("normalizeToken", () => {
  for (const [type, input, expected] of CASES) {
    test(`${type} ${JSON.stringify(input.length > 40 ? input.slice(0, 12) + "…" : input)} → ${expected === null ? "invalid" : "valid"}`, () => {
      const result = normalizeToken(type, input);
      if (expected === null) assert.equal(result.ok, false);
      else assert.deepEqual(result, { ok: true, token: expected });
    });
  }
});

describe("maskToken", () => {
  test("never contains the whole token", () => {
    assert.equal(maskToken("iOSPush", APNS_TOKEN), "…abcdef");
    assert.equal(maskToken("Email", "user@example.com"), "u***@example.com");
    assert.equal(maskToken("SMS", "+821012345678"), "***5678");
  });

  test("an address starting outside the Basic Multilingual Plane keeps its whole first character (valid Unicode in the response)", () => {
    const masked = maskToken("Email", "😀@example.com");
    assert.equal(masked, "😀***@example.com");
    assert.ok(masked.isWellFormed());
  });
});
