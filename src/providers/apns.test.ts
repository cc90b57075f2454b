import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { APNS_DEFAULT_CONNECTIONS, ApnsProvider, PROVIDER_TOKEN_REUSE_MS, sharedProviderToken } from "./apns";
import { installDnsGuard, type DnsGuard } from "./dns-guard";
import { buildApnsPayload } from "./payload";
import { ProviderSimulator, generateApnsSigningKey } from "./simulator";
import { assertHttpDateRetryAfterHonoured, assertOutcomeLike, assertStoppedBatchLeavesWaitingUnsent, testPush } from "./test-support";

let guard: DnsGuard;
let sim: ProviderSimulator;
let apns: ApnsProvider;

before(async () => {
  guard = installDnsGuard();
  sim = new ProviderSimulator();
  await sim.start();
  apns = new ApnsProvider({ ...sim.apnsCredentials(), endpoint: sim.apnsEndpoint() });
});

after(async () => {
  await apns.close();
  await sim.stop();
  assert.deepEqual(guard.blocked, [], "nothing tried to reach Apple");
  guard.uninstall();
});

const message = testPush;

/** Expected outcome fields per simulator token prefix. */
const EXPECTED: Record<string, Partial<Record<string, unknown>>> = {
  ok: { kind: "success" },
  bad: { kind: "permanent", reason: "invalid_token", code: "BadDeviceToken", subscriptionStatus: -10 },
  gone: { kind: "permanent", reason: "unregistered", code: "Unregistered", subscriptionStatus: -10 },
  busy: { kind: "temporary", class: "rate_limited", code: "TooManyRequests", retryAfterMs: 1000 },
  down: { kind: "temporary", class: "provider_outage", code: "ServiceUnavailable" },
  flaky: { kind: "temporary", class: "provider_outage", code: "ServiceUnavailable" },
  mismatch: { kind: "permanent", reason: "token_topic_mismatch", code: "DeviceTokenNotForTopic", subscriptionStatus: -14 },
  reset: { kind: "temporary", class: "network", code: "ERR_HTTP2_STREAM_ERROR" },
  foreign: { kind: "permanent", reason: "provider_auth_failed", code: "BadEnvironmentKeyInToken" },
};

const assertLike = assertOutcomeLike;

test("success: apns-id comes back as providerMessageId; headers and payload are what we built", async () => {
  const m = message("ok-payload", {
    data: { deeplink: "app://x", n: 3, nested: { a: 1 } },
    badge: 4,
    sound: "ping.caf",
    category: "NEWS",
    threadId: "t1",
    imageUrl: "https://cdn.example/i.png",
    interruptionLevel: "time-sensitive",
    priority: "normal",
    expiration: 2_000_000_000,
  });
  const outcome = await apns.send(m);
  assert.deepEqual(outcome, { kind: "success", providerMessageId: m.messageId });
  const seen = sim.lastPayloadFor("ok-payload");
  assert.ok(seen);
  assert.equal(seen.provider, "apns");
  assert.deepEqual(seen.body, buildApnsPayload(m));
  assert.deepEqual(seen.body, {
    aps: {
      alert: { title: "Hello", body: "World" },
      badge: 4,
      sound: "ping.caf",
      category: "NEWS",
      "thread-id": "t1",
      "mutable-content": 1,
      "interruption-level": "time-sensitive",
    },
    deeplink: "app://x",
    n: 3,
    nested: { a: 1 },
    image_url: "https://cdn.example/i.png",
    automata_message_id: m.messageId,
  });
  assert.equal(seen.headers["apns-collapse-id"], m.messageId, "a redelivery after a crash replaces the first copy");
  assert.equal(seen.headers["apns-id"], m.messageId);
  assert.equal(seen.headers["apns-topic"], sim.apnsCredentials().bundleId);
  assert.equal(seen.headers["apns-push-type"], "alert");
  assert.equal(seen.headers["apns-priority"], "5");
  assert.equal(seen.headers["apns-expiration"], "2000000000");
  assert.match(seen.headers.authorization ?? "", /^bearer [\w-]+\.[\w-]+\.[\w-]+$/);
});

test("high priority is APNs 10 (apns2 leaves the header out: 10 is the default)", async () => {
  await apns.send(message("ok-priority", { priority: "high" }));
  assert.equal(sim.lastPayloadFor("ok-priority")?.headers["apns-priority"], undefined);
});

test("non-UUID message ids: APNs assigns the apns-id, collapse id is the message id (hashed past 64 bytes)", async () => {
  const short = await apns.send(message("ok-short", { messageId: "msg-42" }));
  assert.equal(short.kind, "success");
  assert.match(short.kind === "success" ? short.providerMessageId : "", /^[0-9a-f-]{36}$/);
  assert.equal(sim.lastPayloadFor("ok-short")?.headers["apns-collapse-id"], "msg-42");
  const longId = "m".repeat(80);
  assert.equal((await apns.send(message("ok-long", { messageId: longId }))).kind, "success");
  assert.equal(sim.lastPayloadFor("ok-long")?.headers["apns-collapse-id"]?.length, 64);
  assert.equal((sim.lastPayloadFor("ok-long")?.body as Record<string, unknown>).automata_message_id, longId);
});

test("every simulator prefix maps to the expected outcome, one request each (no hidden retries)", async () => {
  for (const prefix of ["bad", "gone", "busy", "down", "mismatch", "reset", "foreign"]) {
    const token = `${prefix}-single`;
    const outcome = await apns.send(message(token));
    assertLike(outcome, EXPECTED[prefix]!, prefix);
    assert.equal(sim.requestsFor(token), 1, `${prefix} requests`);
  }
});

test("auth failures do not touch the subscription", async () => {
  const wrongKey = new ApnsProvider({ ...sim.apnsCredentials(), signingKey: generateApnsSigningKey().privateKeyPem, endpoint: sim.apnsEndpoint() });
  const wrongKid = new ApnsProvider({ ...sim.apnsCredentials(), keyId: "OTHERKEY01", endpoint: sim.apnsEndpoint() });
  const wrongTeam = new ApnsProvider({ ...sim.apnsCredentials(), teamId: "OTHERTEAM1", endpoint: sim.apnsEndpoint() });
  try {
    for (const [label, provider] of [["key", wrongKey], ["kid", wrongKid], ["team", wrongTeam]] as const) {
      const outcome = await provider.send(message(`ok-jwt-${label}`));
      assert.deepEqual(
        { ...outcome, detail: undefined },
        { kind: "permanent", reason: "provider_auth_failed", code: "InvalidProviderToken", detail: undefined },
        label,
      );
      assert.equal("subscriptionStatus" in outcome, false, `${label}: subscription untouched`);
    }
  } finally {
    await Promise.all([wrongKey.close(), wrongKid.close(), wrongTeam.close()]);
  }
});

test("wrong bundle id is a configuration error, not a device error", async () => {
  const wrongTopic = new ApnsProvider({ ...sim.apnsCredentials(), bundleId: "com.other.app", endpoint: sim.apnsEndpoint() });
  try {
    assertLike(await wrongTopic.send(message("ok-topic")), { kind: "permanent", reason: "provider_config_invalid", code: "TopicDisallowed", subscriptionStatus: undefined }, "topic");
  } finally {
    await wrongTopic.close();
  }
});

test("an unusable .p8 key fails every send as provider_auth_failed without a request", async () => {
  const broken = new ApnsProvider({ ...sim.apnsCredentials(), signingKey: "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----", endpoint: sim.apnsEndpoint() });
  try {
    assertLike(await broken.send(message("ok-brokenkey")), { kind: "permanent", reason: "provider_auth_failed", code: "InvalidSigningKey" }, "key");
    assert.equal(sim.requestsFor("ok-brokenkey"), 0);
  } finally {
    await broken.close();
  }
});

test("flaky: 503 first, then success", async () => {
  assertLike(await apns.send(message("flaky-1")), EXPECTED.flaky!, "first");
  assertLike(await apns.send(message("flaky-1")), { kind: "success" }, "second");
  assert.equal(sim.requestsFor("flaky-1"), 2);
});

test("a Retry-After sent as an HTTP-date is honoured like delta-seconds", () =>
  assertHttpDateRetryAfterHonoured((dated) => new ApnsProvider({ ...dated.apnsCredentials(), endpoint: dated.apnsEndpoint() })));

test("slow: answers after ~2 s and still succeeds", async () => {
  const started = Date.now();
  assertLike(await apns.send(message("slow-1")), { kind: "success" }, "slow");
  assert.ok(Date.now() - started >= 1900, "waited for the slow answer");
});

test("invalid messages are refused locally without a request", async () => {
  const outcome = await apns.send(message("ok-invalid", { title: "x".repeat(151) }));
  assertLike(outcome, { kind: "permanent", reason: "message_too_large", code: "validation" }, "validation");
  assert.equal(sim.requestsFor("ok-invalid"), 0);
  assert.deepEqual(apns.validate(message("ok-invalid", { data: { aps: 1 } })).map((i) => i.field), ["data.aps"]);
});

test("batch of 1000 mixed tokens: one outcome per message, in order", async () => {
  const prefixes = ["ok", "bad", "gone", "busy", "down", "flaky", "mismatch", "ok", "ok", "ok"];
  const messages = Array.from({ length: 1000 }, (_, i) => message(`${prefixes[i % prefixes.length]}-batch-${i}`));
  const before = sim.totalRequests();
  const outcomes = await apns.sendBatch(messages);
  assert.equal(outcomes.length, 1000);
  assert.equal(sim.totalRequests() - before, 1000);
  outcomes.forEach((outcome, i) => {
    const prefix = prefixes[i % prefixes.length]!;
    assertLike(outcome, EXPECTED[prefix]!, `#${i}`);
    if (outcome.kind === "success") assert.equal(outcome.providerMessageId, messages[i]!.messageId, `order at #${i}`);
  });
});

test("a burst on fresh connections, and again after reconnecting, waits for APNs to allow more than one stream", async () => {
  // The simulator, like APNs, allows one stream per connection until a provider token is accepted.
  const provider = new ApnsProvider({ ...sim.apnsCredentials(), endpoint: sim.apnsEndpoint() });
  const connectionsBefore = sim.apnsConnectionsAccepted();
  try {
    const messages = Array.from({ length: 200 }, (_, i) => message(`ok-burst-${i}`));
    const outcomes = await provider.sendBatch(messages);
    assert.deepEqual(
      outcomes.filter((o) => o.kind !== "success"),
      [],
      "no stream refused",
    );
    assert.ok(sim.apnsConnectionsAccepted() - connectionsBefore <= APNS_DEFAULT_CONNECTIONS, "200 streams over a few connections");
    // A reconnect starts at one stream again, although the last connection was allowed 1,000.
    sim.dropConnections();
    await new Promise((resolve) => setTimeout(resolve, 200)); // the client sees the loopback close within milliseconds
    const again = await provider.sendBatch(Array.from({ length: 200 }, (_, i) => message(`ok-burst-again-${i}`)));
    assert.deepEqual(
      again.filter((o) => o.kind !== "success"),
      [],
      "no stream refused after reconnecting",
    );
  } finally {
    await provider.close();
  }
});

test("after close, sends answer provider_closed instead of throwing", async () => {
  const provider = new ApnsProvider({ ...sim.apnsCredentials(), endpoint: sim.apnsEndpoint() });
  assert.equal((await provider.send(message("ok-close"))).kind, "success");
  await provider.close();
  assertLike(await provider.send(message("ok-close")), { kind: "temporary", class: "network", reason: "provider_closed" }, "closed");
  assert.deepEqual(await provider.sendBatch([]), []);
});

test("ExpiredProviderToken is retried, not a dead credential: apns2 signs a fresh token and the next attempt goes through", async () => {
  // Providers share one token per key: signed "two hours ago" below, it is older than the shared
  // one, so sharedProviderToken signs again (the clock went back), and the refusal makes every
  // provider of the key drop it (forgetProviderToken) for the retry's fresh one.
  const provider = new ApnsProvider({ ...sim.apnsCredentials(), endpoint: sim.apnsEndpoint() });
  const realNow = Date.now;
  try {
    // apns2 signs the JWT synchronously when the send is handed to it (a microtask after send(),
    // through the hand-off limit), before its first await: only that signature sees the old clock.
    Date.now = () => realNow() - 2 * 3600_000;
    const first = provider.send(message("ok-expired-jwt"));
    await new Promise((resolve) => setImmediate(resolve));
    Date.now = realNow;
    const outcome = await first;
    assertLike(outcome, { kind: "temporary", code: "ExpiredProviderToken" }, "stale token");
    assert.equal("subscriptionStatus" in outcome, false, "the device is fine");
    assertLike(await provider.send(message("ok-expired-jwt")), { kind: "success" }, "retry with a fresh token");
  } finally {
    Date.now = realNow;
    await provider.close();
  }
});

test("every client signing with one key sends the same provider token, also after a close; another key has its own", async () => {
  // APNs answers TooManyProviderTokenUpdates to a key re-signed more often than every 20 minutes.
  const credentials = { ...sim.apnsCredentials(), endpoint: sim.apnsEndpoint() };
  const first = new ApnsProvider(credentials);
  const sandbox = new ApnsProvider({ ...credentials, environment: "sandbox" });
  assert.equal((await first.send(message("ok-jwt-first"))).kind, "success");
  assert.equal((await sandbox.send(message("ok-jwt-sandbox"))).kind, "success");
  await first.close();
  await sandbox.close();
  // What an idle provider closed and made again on the next send does.
  const again = new ApnsProvider(credentials);
  assert.equal((await again.send(message("ok-jwt-again"))).kind, "success");
  await again.close();
  const bearer = (token: string) => sim.lastPayloadFor(token)?.headers.authorization;
  assert.match(bearer("ok-jwt-first") ?? "", /^bearer [\w-]+\.[\w-]+\.[\w-]+$/);
  assert.equal(bearer("ok-jwt-sandbox"), bearer("ok-jwt-first"));
  assert.equal(bearer("ok-jwt-again"), bearer("ok-jwt-first"));
  // Another key (here refused by the simulator, which knows one) signs a token of its own.
  const other = new ApnsProvider({ ...credentials, signingKey: generateApnsSigningKey().privateKeyPem });
  assertLike(await other.send(message("ok-jwt-other-key")), { kind: "permanent", code: "InvalidProviderToken" }, "unknown key");
  await other.close();
  assert.notEqual(bearer("ok-jwt-other-key"), bearer("ok-jwt-first"));
});

test("sharedProviderToken signs again only after the reuse period, or when the clock went back", () => {
  let signatures = 0;
  const sign = () => `token-${++signatures}`;
  const key = `test-key-${Date.now()}`;
  const t0 = 1_000_000_000_000;
  assert.equal(sharedProviderToken(key, sign, t0), "token-1");
  assert.equal(sharedProviderToken(key, sign, t0 + PROVIDER_TOKEN_REUSE_MS - 1), "token-1");
  assert.equal(sharedProviderToken(key, sign, t0 + PROVIDER_TOKEN_REUSE_MS), "token-2");
  assert.equal(sharedProviderToken(key, sign, t0), "token-3", "clock went back: a token from the future would be refused");
  assert.equal(sharedProviderToken(`${key}-other`, sign, t0), "token-4");
});

test("an expiration already past goes out as apns-expiration 0 (deliver now or never), like FCM's ttl 0", async () => {
  const past = Math.floor(Date.now() / 1000) - 30;
  assert.equal((await apns.send(message("ok-expired-ttl", { expiration: past }))).kind, "success");
  assert.equal(sim.lastPayloadFor("ok-expired-ttl")?.headers["apns-expiration"], "0");
  assert.equal((await apns.send(message("ok-ttl-zero", { expiration: 0 }))).kind, "success");
  assert.equal(sim.lastPayloadFor("ok-ttl-zero")?.headers["apns-expiration"], "0");
});

test("a stopped batch keeps the pushes still waiting for a connection unsent; the one under way finishes", () =>
  assertStoppedBatchLeavesWaitingUnsent((s) => new ApnsProvider({ ...s.apnsCredentials(), endpoint: s.apnsEndpoint(), connections: 1, pipelining: 1 })));
