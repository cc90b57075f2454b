import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { installDnsGuard, type DnsGuard } from "./dns-guard";
import { FcmProvider } from "./fcm";
import { ProviderSimulator } from "./simulator";
import { assertHttpDateRetryAfterHonoured, assertOutcomeLike, assertStoppedBatchLeavesWaitingUnsent, testPush } from "./test-support";

let guard: DnsGuard;
let sim: ProviderSimulator;
let fcm: FcmProvider;

before(async () => {
  guard = installDnsGuard();
  sim = new ProviderSimulator();
  await sim.start();
  fcm = new FcmProvider({ ...sim.fcmCredentials(), endpoint: sim.fcmEndpoint() });
});

after(async () => {
  await fcm.close();
  await sim.stop();
  assert.deepEqual(guard.blocked, [], "nothing tried to reach Google");
  guard.uninstall();
});

const message = testPush;

const EXPECTED: Record<string, Partial<Record<string, unknown>>> = {
  ok: { kind: "success" },
  bad: { kind: "permanent", reason: "invalid_token", code: "messaging/invalid-argument", subscriptionStatus: -4 },
  gone: { kind: "permanent", reason: "unregistered", code: "messaging/registration-token-not-registered", subscriptionStatus: -10 },
  busy: { kind: "temporary", class: "rate_limited", code: "messaging/message-rate-exceeded", retryAfterMs: 1000 },
  down: { kind: "temporary", class: "provider_outage", code: "messaging/server-unavailable" },
  flaky: { kind: "temporary", class: "provider_outage", code: "messaging/server-unavailable" },
  mismatch: { kind: "permanent", reason: "sender_id_mismatch", code: "messaging/mismatched-credential", subscriptionStatus: -6 },
  reset: { kind: "temporary", class: "network", code: "app/network-error" },
  foreign: { kind: "permanent", reason: "provider_auth_failed", code: "messaging/third-party-auth-error" },
};

const assertLike = assertOutcomeLike;

interface Envelope {
  message: { token: string; data: Record<string, string>; notification?: Record<string, string>; android?: Record<string, unknown> };
}

test("success: FCM message name is the providerMessageId; data is stringified and carries automata_message_id", async () => {
  const m = message("ok-payload", {
    data: { deeplink: "app://x", n: 3, flag: true, nested: { a: [1, 2] } },
    imageUrl: "https://cdn.example/i.png",
    priority: "high",
    expiration: Math.floor(Date.now() / 1000) + 600,
    collapseKey: "scores",
    clickAction: "OPEN_MAIN",
    androidChannelId: "alerts",
    sound: "default",
  });
  const outcome = await fcm.send(m);
  assert.equal(outcome.kind, "success");
  assert.match(outcome.kind === "success" ? outcome.providerMessageId : "", new RegExp(`^projects/${sim.fcmCredentials().projectId}/messages/\\d+$`));
  const seen = sim.lastPayloadFor("ok-payload");
  assert.ok(seen);
  assert.equal(seen.provider, "fcm");
  assert.equal(seen.headers.authorization, `Bearer ${sim.fcmCredentials().accessToken}`);
  const { message: sent } = seen.body as Envelope;
  assert.equal(sent.token, "ok-payload");
  assert.deepEqual(sent.data, { deeplink: "app://x", n: "3", flag: "true", nested: '{"a":[1,2]}', automata_message_id: m.messageId });
  assert.deepEqual(sent.notification, { title: "Hello", body: "World", image: "https://cdn.example/i.png" });
  const android = sent.android as { priority: string; ttl: string; collapse_key: string; notification: Record<string, string> };
  assert.equal(android.priority, "high");
  assert.equal(android.collapse_key, "scores");
  assert.deepEqual(android.notification, { tag: m.messageId, click_action: "OPEN_MAIN", channel_id: "alerts", sound: "default" });
  const ttl = Number(android.ttl.replace(/s$/, ""));
  assert.ok(ttl > 590 && ttl <= 600, `ttl ${android.ttl} derives from the absolute expiration`);
});

test("every simulator prefix maps to the expected outcome, one request each (firebase-admin retries are off)", async () => {
  assert.equal(fcm.sdkRetriesDisabled, true);
  for (const prefix of ["bad", "gone", "busy", "down", "mismatch", "reset", "foreign"]) {
    const token = `${prefix}-single`;
    const outcome = await fcm.send(message(token));
    assertLike(outcome, EXPECTED[prefix]!, prefix);
    // One request: firebase-admin did not retry (its backoff would also have cost seconds).
    assert.equal(sim.requestsFor(token), 1, `${prefix} requests`);
  }
});

test("a wrong access token or project is an auth failure that leaves the subscription alone", async () => {
  const wrongToken = new FcmProvider({ ...sim.fcmCredentials(), accessToken: "not-the-token", endpoint: sim.fcmEndpoint() });
  const wrongProject = new FcmProvider({ ...sim.fcmCredentials(), projectId: "someone-else", endpoint: sim.fcmEndpoint() });
  try {
    const a = await wrongToken.send(message("ok-auth-token"));
    assertLike(a, { kind: "permanent", reason: "provider_auth_failed", code: "messaging/third-party-auth-error" }, "token");
    assert.equal("subscriptionStatus" in a, false);
    const b = await wrongProject.send(message("ok-auth-project"));
    assertLike(b, { kind: "permanent", reason: "provider_auth_failed", code: "messaging/mismatched-credential" }, "project");
    assert.equal("subscriptionStatus" in b, false);
  } finally {
    await Promise.all([wrongToken.close(), wrongProject.close()]);
  }
});

test("an unusable service account fails every send as provider_auth_failed without a request", async () => {
  const broken = new FcmProvider({ projectId: "p", serviceAccount: '{"client_email":"x@y","private_key":"nope"}', endpoint: sim.fcmEndpoint() });
  const missing = new FcmProvider({ projectId: "p", endpoint: sim.fcmEndpoint() });
  try {
    assertLike(await broken.send(message("ok-badsa")), { kind: "permanent", reason: "provider_auth_failed", code: "invalid_credential" }, "broken");
    assertLike(await missing.send(message("ok-badsa")), { kind: "permanent", reason: "provider_auth_failed" }, "missing");
    assert.equal(sim.requestsFor("ok-badsa"), 0);
  } finally {
    await Promise.all([broken.close(), missing.close()]);
  }
});

test("flaky: 503 first, then success", async () => {
  assertLike(await fcm.send(message("flaky-1")), EXPECTED.flaky!, "first");
  assertLike(await fcm.send(message("flaky-1")), { kind: "success" }, "second");
  assert.equal(sim.requestsFor("flaky-1"), 2);
});

test("a Retry-After sent as an HTTP-date is honoured like delta-seconds", () =>
  assertHttpDateRetryAfterHonoured((dated) => new FcmProvider({ ...dated.fcmCredentials(), endpoint: dated.fcmEndpoint() })));

test("slow: answers after ~2 s and still succeeds", async () => {
  const started = Date.now();
  assertLike(await fcm.send(message("slow-1")), { kind: "success" }, "slow");
  assert.ok(Date.now() - started >= 1900);
});

test("sends in flight are bounded by maxSockets: 12 concurrent sends over a slow round trip use 3 connections", async () => {
  const distant = new ProviderSimulator({ latencyMs: 200 });
  await distant.start();
  const pooled = new FcmProvider({ ...distant.fcmCredentials(), endpoint: distant.fcmEndpoint(), maxSockets: 3 });
  try {
    const outcomes = await pooled.sendBatch(Array.from({ length: 12 }, (_, i) => message(`ok-pool-${i}`)));
    assert.deepEqual(outcomes.map((o) => o.kind), Array<string>(12).fill("success"));
    assert.equal(distant.fcmConnectionsAccepted(), 3);
    assert.equal(distant.fcmConnectionsOpen(), 3, "kept alive for the next batch");
  } finally {
    await pooled.close();
    await distant.stop();
  }
});

test("idle keep-alive sockets are closed after idleSocketMs, and the next send opens a new one", async () => {
  const idle = new ProviderSimulator();
  await idle.start();
  const pooled = new FcmProvider({ ...idle.fcmCredentials(), endpoint: idle.fcmEndpoint(), idleSocketMs: 300 });
  try {
    assertLike(await pooled.send(message("ok-idle-1")), { kind: "success" }, "first");
    assert.equal(idle.fcmConnectionsOpen(), 1);
    const deadline = Date.now() + 5_000;
    while (idle.fcmConnectionsOpen() > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(idle.fcmConnectionsOpen(), 0, "the idle socket was closed");
    assertLike(await pooled.send(message("ok-idle-2")), { kind: "success" }, "after the close");
    assert.equal(idle.fcmConnectionsAccepted(), 2);
  } finally {
    await pooled.close();
    await idle.stop();
  }
});

test("invalid messages are refused locally without a request", async () => {
  assertLike(await fcm.send(message("ok-invalid", { data: { from: "x" } })), { kind: "permanent", reason: "invalid_message_content", code: "validation" }, "reserved key");
  assertLike(await fcm.send(message("ok-invalid", { body: "b".repeat(4001) })), { kind: "permanent", reason: "message_too_large" }, "too large");
  assert.equal(sim.requestsFor("ok-invalid"), 0);
});

test("batch of 1000 mixed tokens (two sendEach chunks, some invalid): one outcome per message, in order", async () => {
  const prefixes = ["ok", "bad", "gone", "busy", "down", "flaky", "mismatch", "ok", "ok", "ok"];
  const messages = Array.from({ length: 1000 }, (_, i) =>
    i % 97 === 0 ? message(`ok-batch-invalid-${i}`, { title: undefined, body: undefined }) : message(`${prefixes[i % prefixes.length]}-batch-${i}`),
  );
  const invalid = messages.filter((m) => m.token.includes("invalid")).length;
  const before = sim.totalRequests();
  const outcomes = await fcm.sendBatch(messages);
  assert.equal(outcomes.length, 1000);
  assert.equal(sim.totalRequests() - before, 1000 - invalid);
  outcomes.forEach((outcome, i) => {
    if (messages[i]!.token.includes("invalid")) return assertLike(outcome, { kind: "permanent", code: "validation" }, `#${i}`);
    const prefix = prefixes[i % prefixes.length]!;
    assertLike(outcome, EXPECTED[prefix]!, `#${i}`);
    if (prefix === "down") assert.equal("retryAfterMs" in outcome, false, "a 429's Retry-After does not leak onto 503s");
    if (outcome.kind === "success") assert.equal(sim.lastPayloadFor(messages[i]!.token) !== undefined, true);
  });
  // Order check: every success's recorded request carries that message's own id.
  outcomes.forEach((outcome, i) => {
    if (outcome.kind !== "success") return;
    const seen = sim.lastPayloadFor(messages[i]!.token)?.body as Envelope;
    assert.equal(seen.message.data.automata_message_id, messages[i]!.messageId);
  });
});

test("after close, sends answer provider_closed instead of throwing", async () => {
  const provider = new FcmProvider({ ...sim.fcmCredentials(), endpoint: sim.fcmEndpoint() });
  assert.equal((await provider.send(message("ok-close"))).kind, "success");
  await provider.close();
  assertLike(await provider.send(message("ok-close")), { kind: "temporary", class: "network", reason: "provider_closed" }, "closed");
});

test("close lets sends under way finish (a rotated credential retires the provider mid-send) and refuses new ones", async () => {
  const slowSim = new ProviderSimulator({ slowMs: 800 });
  await slowSim.start();
  try {
    const provider = new FcmProvider({ ...slowSim.fcmCredentials(), endpoint: slowSim.fcmEndpoint() });
    const sending = provider.sendBatch([message("slow-close-1"), message("slow-close-2")]);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const closing = provider.close();
    const outcomes = await sending;
    await closing;
    assert.deepEqual(outcomes.map((o) => o.kind), ["success", "success"]);
    assert.equal(slowSim.requestsFor("slow-close-1"), 1);
    const after = await provider.send(message("ok-after-close"));
    assertLike(after, { kind: "temporary", class: "network", reason: "provider_closed" }, "a send after close");
    assert.equal(slowSim.requestsFor("ok-after-close"), 0);
  } finally {
    await slowSim.stop();
  }
});

test("a stopped batch keeps the pushes still waiting for a connection unsent; the one under way finishes", () =>
  assertStoppedBatchLeavesWaitingUnsent((s) => new FcmProvider({ ...s.fcmCredentials(), endpoint: s.fcmEndpoint(), maxSockets: 1 })));
