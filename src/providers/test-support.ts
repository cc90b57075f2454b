import assert from "node:assert/strict";
import crypto from "node:crypto";
import { ProviderSimulator } from "./simulator";
import type { PushMessage, PushProvider, SendOutcome } from "./types";

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

/**
 * Sends one rate-limited push through a provider built for a simulator that sends Retry-After as
 * an HTTP-date (120 s ahead), and asserts the outcome waits those 120 s.
 */
export async function assertHttpDateRetryAfterHonoured(build: (simulator: ProviderSimulator) => PushProvider): Promise<void> {
  const dated = new ProviderSimulator({ retryAfterSeconds: 120, retryAfterAsDate: true });
  await dated.start();
  const provider = build(dated);
  try {
    const [outcome] = await provider.sendBatch([testPush("busy-dated")]);
    assert.equal(outcome?.kind === "temporary" ? outcome.class : outcome?.kind, "rate_limited");
    const waitMs = outcome?.kind === "temporary" ? outcome.retryAfterMs : undefined;
    // An HTTP-date has whole seconds, so the wait is within a second (plus the round trip) of 120 s.
    assert.ok(waitMs !== undefined && waitMs > 118_000 && waitMs <= 120_000, `retryAfterMs ${waitMs}`);
  } finally {
    await provider.close();
    await dated.stop();
  }
}
