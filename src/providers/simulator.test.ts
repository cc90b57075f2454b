import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import http2 from "node:http2";
import https from "node:https";
import { installDnsGuard, type DnsGuard } from "./dns-guard";
import { ProviderSimulator, forgetOldest, generateApnsSigningKey } from "./simulator";

let guard: DnsGuard;
let sim: ProviderSimulator;

before(async () => {
  guard = installDnsGuard();
  sim = new ProviderSimulator({ slowMs: 50 });
  await sim.start();
});

after(async () => {
  await sim.stop();
  guard.uninstall();
});

function jwt(privateKeyPem: string, kid: string, iss: string, iat = Math.floor(Date.now() / 1000)): string {
  const head = Buffer.from(JSON.stringify({ alg: "ES256", kid })).toString("base64url");
  const claims = Buffer.from(JSON.stringify({ iss, iat })).toString("base64url");
  const signature = crypto.sign("sha256", Buffer.from(`${head}.${claims}`), { key: privateKeyPem, dsaEncoding: "ieee-p1363" });
  return `${head}.${claims}.${signature.toString("base64url")}`;
}

async function apnsRequest(token: string, headers: Record<string, string>, body = '{"aps":{"alert":"x"}}', method = "POST", path?: string) {
  const session = http2.connect(sim.apnsEndpoint().url, { ca: sim.apnsEndpoint().ca });
  try {
    return await new Promise<{ status: number; apnsId: string | undefined; body: Record<string, unknown> | undefined }>((resolve, reject) => {
      const req = session.request({ ":method": method, ":path": path ?? `/3/device/${token}`, ...headers });
      let status = 0;
      let apnsId: string | undefined;
      req.on("response", (h) => {
        status = Number(h[":status"]);
        apnsId = h["apns-id"] as string | undefined;
      });
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const text = Buffer.concat(chunks).toString();
        resolve({ status, apnsId, body: text ? (JSON.parse(text) as Record<string, unknown>) : undefined });
      });
      req.on("error", reject);
      req.end(method === "POST" ? body : undefined);
    });
  } finally {
    session.close();
  }
}

function fcmRequest(body: unknown, authorization: string, project = sim.fcmCredentials().projectId, target = sim) {
  const { url, ca } = target.fcmEndpoint();
  return new Promise<{ status: number; headers: Record<string, unknown>; body: Record<string, unknown> }>((resolve, reject) => {
    const req = https.request(`${url}/v1/projects/${project}/messages:send`, { method: "POST", ca, headers: { authorization, "content-type": "application/json" } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown> }));
    });
    req.on("error", reject);
    req.end(JSON.stringify(body));
  });
}

test("generated signing keys look like .p8 files (PKCS#8 EC P-256)", () => {
  const { privateKeyPem, publicKeyPem } = generateApnsSigningKey();
  assert.match(privateKeyPem, /^-----BEGIN PRIVATE KEY-----/);
  const key = crypto.createPrivateKey(privateKeyPem);
  assert.equal(key.asymmetricKeyType, "ec");
  assert.equal(key.asymmetricKeyDetails?.namedCurve, "prime256v1");
  assert.match(publicKeyPem, /^-----BEGIN PUBLIC KEY-----/);
});

test("APNs side verifies the provider JWT: signature, kid, iss and age", async () => {
  const creds = sim.apnsCredentials();
  const topic = { "apns-topic": creds.bundleId };
  const accepted = `bearer ${jwt(creds.signingKey, creds.keyId, creds.teamId)}`;
  const good = await apnsRequest("ok-raw", { ...topic, authorization: accepted, "apns-id": "0b6f9c3e-3a43-4b53-9a32-4b5a0c1d2e3f" });
  assert.deepEqual([good.status, good.apnsId], [200, "0b6f9c3e-3a43-4b53-9a32-4b5a0c1d2e3f"]);

  const cases: Array<[string, Record<string, string>, number, string]> = [
    ["no token", topic, 403, "MissingProviderToken"],
    ["other key", { ...topic, authorization: `bearer ${jwt(generateApnsSigningKey().privateKeyPem, creds.keyId, creds.teamId)}` }, 403, "InvalidProviderToken"],
    ["other kid", { ...topic, authorization: `bearer ${jwt(creds.signingKey, "NOPE", creds.teamId)}` }, 403, "InvalidProviderToken"],
    ["other team", { ...topic, authorization: `bearer ${jwt(creds.signingKey, creds.keyId, "NOPE")}` }, 403, "InvalidProviderToken"],
    ["garbage", { ...topic, authorization: "bearer a.b.c" }, 403, "InvalidProviderToken"],
    ["two hours old", { ...topic, authorization: `bearer ${jwt(creds.signingKey, creds.keyId, creds.teamId, Math.floor(Date.now() / 1000) - 7200)}` }, 403, "ExpiredProviderToken"],
    ["wrong topic", { "apns-topic": "x.y", authorization: `bearer ${jwt(creds.signingKey, creds.keyId, creds.teamId)}` }, 400, "TopicDisallowed"],
    ["bad priority", { ...topic, "apns-priority": "7", authorization: `bearer ${jwt(creds.signingKey, creds.keyId, creds.teamId)}` }, 400, "BadPriority"],
  ];
  for (const [label, headers, status, reason] of cases) {
    const res = await apnsRequest("ok-raw", headers);
    assert.deepEqual([res.status, res.body?.reason], [status, reason], label);
  }
  const oversized = await apnsRequest("ok-raw", { ...topic, authorization: `bearer ${jwt(creds.signingKey, creds.keyId, creds.teamId)}` }, JSON.stringify({ aps: {}, x: "y".repeat(5000) }));
  assert.deepEqual([oversized.status, oversized.body?.reason], [413, "PayloadTooLarge"]);
  assert.equal((await apnsRequest("ok-raw", topic, "", "GET")).status, 405);
  assert.equal((await apnsRequest("ok-raw", topic, "{}", "POST", "/3/other")).status, 404);

  // A token accepted once is refused once it is an hour old: the verdict cached is the signature's, not the age's.
  const realNow = Date.now;
  try {
    Date.now = () => realNow() + 3_601_000;
    const stale = await apnsRequest("ok-raw", { ...topic, authorization: accepted });
    assert.deepEqual([stale.status, stale.body?.reason], [403, "ExpiredProviderToken"]);
  } finally {
    Date.now = realNow;
  }
});

test("latencyMs delays every answer, refusals included, as a remote provider's round trip does", async () => {
  const distant = new ProviderSimulator({ latencyMs: 300 });
  await distant.start();
  try {
    for (const authorization of [`Bearer ${distant.fcmCredentials().accessToken}`, "Bearer wrong"]) {
      const asked = performance.now();
      const answer = await fcmRequest({ message: { token: "ok-distant", data: {} } }, authorization, distant.fcmCredentials().projectId, distant);
      assert.ok(performance.now() - asked >= 290, `answered ${answer.status} after ${Math.round(performance.now() - asked)} ms`);
    }
  } finally {
    await distant.stop();
  }
});

test("APNs 410 carries a timestamp; 429 carries Retry-After", async () => {
  const creds = sim.apnsCredentials();
  const headers = { "apns-topic": creds.bundleId, authorization: `bearer ${jwt(creds.signingKey, creds.keyId, creds.teamId)}` };
  const gone = await apnsRequest("gone-raw", headers);
  assert.equal(gone.status, 410);
  assert.equal(typeof gone.body?.timestamp, "number");
  assert.equal((await apnsRequest("busy-raw", headers)).status, 429);
});

test("FCM side: bearer token, project, v1 error bodies, string-only data", async () => {
  const { accessToken, projectId } = sim.fcmCredentials();
  const ok = await fcmRequest({ message: { token: "ok-fcm-raw", data: { a: "1" } } }, `Bearer ${accessToken}`);
  assert.equal(ok.status, 200);
  assert.match(String(ok.body.name), new RegExp(`^projects/${projectId}/messages/`));

  const unauth = await fcmRequest({ message: { token: "ok-fcm-raw" } }, "Bearer wrong");
  assert.equal(unauth.status, 401);
  assert.equal((unauth.body.error as { status: string }).status, "UNAUTHENTICATED");

  const cases: Array<[string, unknown, number, string]> = [
    ["bad-fcm-raw", { message: { token: "bad-fcm-raw" } }, 400, "INVALID_ARGUMENT"],
    ["gone-fcm-raw", { message: { token: "gone-fcm-raw" } }, 404, "UNREGISTERED"],
    ["busy-fcm-raw", { message: { token: "busy-fcm-raw" } }, 429, "QUOTA_EXCEEDED"],
    ["down-fcm-raw", { message: { token: "down-fcm-raw" } }, 503, "UNAVAILABLE"],
    ["mismatch-fcm-raw", { message: { token: "mismatch-fcm-raw" } }, 403, "SENDER_ID_MISMATCH"],
    ["numeric data", { message: { token: "ok-fcm-raw", data: { a: 1 } } }, 400, "INVALID_ARGUMENT"],
  ];
  for (const [label, body, status, errorCode] of cases) {
    const res = await fcmRequest(body, `Bearer ${accessToken}`);
    const error = res.body.error as { code: number; details: Array<{ "@type": string; errorCode: string }> };
    assert.equal(res.status, status, label);
    assert.equal(error.code, status, label);
    assert.deepEqual(error.details, [{ "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", errorCode }], label);
    if (status === 429) assert.equal(res.headers["retry-after"], "1");
  }
});

test("counters, last payload and reset", async () => {
  const { accessToken } = sim.fcmCredentials();
  sim.reset();
  assert.equal(sim.totalRequests(), 0);
  await fcmRequest({ message: { token: "flaky-count" } }, `Bearer ${accessToken}`);
  const second = await fcmRequest({ message: { token: "flaky-count", data: { k: "v" } } }, `Bearer ${accessToken}`);
  assert.equal(second.status, 200, "flaky succeeds on the second attempt");
  const started = Date.now();
  await fcmRequest({ message: { token: "slow-count" } }, `Bearer ${accessToken}`);
  assert.ok(Date.now() - started >= 45);
  assert.equal(sim.requestsFor("flaky-count"), 2);
  assert.equal(sim.totalRequests(), 3);
  assert.deepEqual(sim.lastPayloadFor("flaky-count")?.body, { message: { token: "flaky-count", data: { k: "v" } } });
  assert.equal(sim.requestsFor("never-sent"), 0);
  sim.reset();
  assert.equal(sim.requestsFor("flaky-count"), 0);
  assert.equal(sim.lastPayloadFor("flaky-count"), undefined);
});

test("stop closes the ports and a restarted simulator gets fresh ones", async () => {
  const other = new ProviderSimulator();
  const info = await other.start();
  assert.ok(info.apnsPort > 0 && info.fcmPort > 0 && info.apnsPort !== info.fcmPort);
  assert.match(info.ca, /BEGIN CERTIFICATE/);
  await other.stop();
  await assert.rejects(fcmRequestTo(info.fcmUrl, info.ca), { code: "ECONNREFUSED" });
  assert.throws(() => other.apnsEndpoint(), /not started/);
});

function fcmRequestTo(url: string, ca: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = https.request(`${url}/v1/projects/x/messages:send`, { method: "POST", ca }, () => resolve());
    req.on("error", reject);
    req.end("{}");
  });
}

test("the simulator's token memory stays bounded, forgetting the oldest tokens first", () => {
  const cases: Array<{ size: number; max: number; kept: number; firstKept: number }> = [
    { size: 10, max: 10, kept: 10, firstKept: 0 }, // at the bound: nothing forgotten
    { size: 11, max: 10, kept: 9, firstKept: 2 }, // one over: the oldest tenth goes at once
    { size: 1_000, max: 100, kept: 90, firstKept: 910 },
  ];
  for (const { size, max, kept, firstKept } of cases) {
    const map = new Map(Array.from({ length: size }, (_, i) => [`t${i}`, i] as const));
    forgetOldest(map, max);
    assert.equal(map.size, kept, `size ${size}, max ${max}`);
    assert.equal(map.keys().next().value, `t${firstKept}`, `oldest kept of ${size}`);
    assert.ok(map.has(`t${size - 1}`), "the newest is kept");
  }
});
