import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { captureLogLines } from "./support/log-capture";
import { startTestApp, eventually, type TestApp } from "./support/harness";
import { createPushSubscription, simulatorToken } from "./support/fixtures";

// Everything this process logs (API requests, activities, the Temporal SDK runtime) lands here.
const { lines, stream: capture } = captureLogLines();

let app: TestApp;

before(async () => {
  // debug: the strictest setting that still runs in CI; more is logged, so more could leak.
  app = await startTestApp({ worker: true, logDestination: capture, logLevel: "debug" });
});
after(async () => {
  await app.close();
});

test("logs carry ids but never device tokens, API keys, the admin token or signing keys", async () => {
  const { id: applicationId, apiKey } = await app.createApplication();
  const token = simulatorToken("ok");
  const sub = await createPushSubscription(app, apiKey, { type: "iOSPush", token });
  const sent = await app.request("POST", "/messages", { key: apiKey, body: { subscription_id: sub.id, title: "Hello", body: "World" } });
  assert.equal(sent.status, 201, JSON.stringify(sent.body));
  const messageId = sent.body.data.message_id as string;
  await eventually(async () => (await app.request("GET", `/messages/${messageId}`, { key: apiKey })).body.data.status === "successful");
  const receipt = await app.request("POST", `/messages/${messageId}/status`, { key: apiKey, body: { status: "received" } });
  assert.equal(receipt.status, 200);
  // A failure path logs too: a token the provider refuses.
  const badToken = simulatorToken("bad");
  const bad = await createPushSubscription(app, apiKey, { type: "iOSPush", token: badToken });
  const failed = await app.request("POST", "/messages", { key: apiKey, body: { subscription_id: bad.id, title: "x" } });
  await eventually(async () => (await app.request("GET", `/messages/${failed.body.data.message_id}`, { key: apiKey })).body.data.status === "failed");

  // External user ids are personal data: looked up by query and by path, they stay out of the logs.
  const personal = "jane.logged@example.com";
  await app.request("GET", `/messages?external_id=${encodeURIComponent(personal)}`, { key: apiKey });
  await app.request("GET", `/subscriptions?user_id=${encodeURIComponent(personal)}`, { key: apiKey });
  await app.request("GET", `/users/${encodeURIComponent(personal)}/subscriptions`, { key: apiKey });
  const keyed = await app.request("POST", "/messages", { key: apiKey, body: { subscription_id: sub.id, title: "Hi" }, headers: { "Idempotency-Key": `welcome-${personal}` } });
  assert.equal(keyed.status, 201, JSON.stringify(keyed.body));
  // Its worker logs too (the workflow and the send activity), not only the request's.
  await eventually(async () => (await app.request("GET", `/messages/${keyed.body.data.message_id}`, { key: apiKey })).body.data.status === "successful");

  const output = lines.join("");
  assert.ok(output.length > 0, "something was logged");
  assert.ok(!output.includes("jane.logged"), "an external user id was logged");

  // Useful fields are present: request ids, the application id, message and workflow ids.
  const records = output.split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  const requestLogs = records.filter((r) => r.req && r.res);
  assert.ok(requestLogs.length > 0, "request logs are written");
  assert.ok(requestLogs.every((r) => typeof (r.req as { id?: unknown }).id === "string"), "every request log has a request id");
  assert.ok(requestLogs.some((r) => r.application_id === applicationId), "authenticated requests carry application_id");
  const providerLogs = records.filter((r) => r.msg === "provider answered" && r.message_id === messageId);
  assert.equal(providerLogs.length, 1, "the activity logs the provider outcome with the message id");
  assert.equal(providerLogs[0]!.workflow_id, `message-${messageId}`);
  assert.equal(providerLogs[0]!.application_id, applicationId);

  // Secrets: none of them, anywhere, in any form we might plausibly print.
  const signingKey = app.simulator!.target.apns.signingKey;
  const signingKeyBody = signingKey.split("\n").filter((l) => l && !l.startsWith("-----"));
  const secrets: Record<string, string> = {
    "device token": token,
    "bad device token": badToken,
    "api key": apiKey,
    "admin token": app.adminToken,
    "fcm access token": app.simulator!.target.fcm.accessToken,
    "encryption key": app.encryptionKey,
  };
  for (const [what, secret] of Object.entries(secrets)) assert.ok(!output.includes(secret), `the ${what} is not logged`);
  assert.ok(signingKeyBody.length > 0);
  for (const line of signingKeyBody) assert.ok(!output.includes(line), "no line of the APNs signing key is logged");
  // The redaction marker shows the headers were there and were replaced.
  assert.ok(output.includes("[redacted]"), "secret headers are redacted, not dropped silently");
});
