import assert from "node:assert/strict";
import crypto from "node:crypto";
import type { PushMessage, SendOutcome } from "./types";

/** A push for `token` with a fresh message id; `extra` overrides any field. */
export function testPush(token: string, extra: Partial<PushMessage> = {}): PushMessage {
  return { messageId: crypto.randomUUID(), token, title: "Hello", body: "World", ...extra };
}

/** Asserts that every field of `expected` equals the outcome's (other fields are not checked). */
export function assertOutcomeLike(outcome: SendOutcome, expected: Partial<Record<string, unknown>>, label: string): void {
  for (const [key, value] of Object.entries(expected)) {
    assert.deepEqual((outcome as unknown as Record<string, unknown>)[key], value, `${label}: ${key} in ${JSON.stringify(outcome)}`);
  }
}
