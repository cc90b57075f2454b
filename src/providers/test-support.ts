import assert from "node:assert/strict";
import crypto from "node:crypto";
import { ProviderSimulator } from "./simulator";
import type { BatchOutcome, PushMessage, PushProvider } from "./types";

/** A push for `token` with a fresh message id; `extra` overrides any field. */
export function testPush(token: string, extra: Partial<PushMessage> = {}): PushMessage {
  return { messageId: crypto.randomUUID(), token, title: "Hello", body: "World", ...extra };
}

/** Asserts that every field of `expected` equals the outcome's (other fields are not checked). */
export function assertOutcomeLike(outcome: BatchOutcome | undefined, expected: Partial<Record<string, unknown>>, label: string): void {
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

/**
 * Sends three slow pushes through a provider built with room for one request at a time and stops
 * the batch once the first has reached the provider: the first is answered, the two still waiting
 * for the connection are answered `not_sent` and never reach the provider, and the call returns
 * when the first is answered, not after all three.
 */
export async function assertStoppedBatchLeavesWaitingUnsent(build: (simulator: ProviderSimulator) => PushProvider): Promise<void> {
  const simulator = new ProviderSimulator({ slowMs: 500 });
  await simulator.start();
  const provider = build(simulator);
  try {
    const tokens = ["slow-stop-1", "slow-stop-2", "slow-stop-3"].map((t) => `${t}-${crypto.randomUUID()}`);
    const stop = new AbortController();
    const sending = provider.sendBatch(tokens.map((token) => testPush(token)), { stop: stop.signal });
    const deadline = Date.now() + 10_000;
    while (simulator.requestsFor(tokens[0]!) === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(simulator.requestsFor(tokens[0]!), 1, "the first push reached the provider");
    stop.abort();
    const outcomes = await sending;
    assert.deepEqual(outcomes.map((o) => o.kind), ["success", "not_sent", "not_sent"]);
    // Past the time the other two would have taken: they were dropped, not merely answered early.
    await new Promise((resolve) => setTimeout(resolve, 1_200));
    assert.deepEqual(tokens.map((token) => simulator.requestsFor(token)), [1, 0, 0], "the waiting pushes never reached the provider");
    // Stopped right after the call, before any request exists (FCM creates them once its access
    // token resolves): none is sent.
    const late = ["ok-stop-early-1", "ok-stop-early-2"].map((t) => `${t}-${crypto.randomUUID()}`);
    const early = new AbortController();
    const stoppedEarly = provider.sendBatch(late.map((token) => testPush(token)), { stop: early.signal });
    early.abort();
    assert.deepEqual((await stoppedEarly).map((o) => o.kind), ["not_sent", "not_sent"]);
    assert.deepEqual(late.map((token) => simulator.requestsFor(token)), [0, 0]);
    // A send without a stop is unaffected afterwards.
    assert.equal((await provider.sendBatch([testPush(`ok-after-stop-${crypto.randomUUID()}`)]))[0]?.kind, "success");
  } finally {
    await provider.close();
    await simulator.stop();
  }
}
