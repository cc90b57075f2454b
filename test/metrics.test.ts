import net from "node:net";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startTestApp, eventually, type TestApp } from "./support/harness";
import { createPushSubscription, simulatorToken } from "./support/fixtures";
import { registry } from "../src/metrics/registry";
import { startMetricsServer } from "../src/metrics/exposition";

let app: TestApp;
let apiKey: string;

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Current value of one series (0 when it was never recorded); histograms answer their _count. */
async function valueOf(name: string, labels: Record<string, string>): Promise<number> {
  const metric = registry.getSingleMetric(name);
  assert.ok(metric, `${name} is registered`);
  const { values } = await metric.get();
  const wanted = Object.entries(labels);
  const matching = values.filter((v) => wanted.every(([k, val]) => String((v.labels as Record<string, unknown>)[k]) === val));
  const counts = matching.filter((v) => !("metricName" in v) || (v as { metricName?: string }).metricName === `${name}_count` || (v as { metricName?: string }).metricName === name);
  return counts.reduce((sum, v) => sum + v.value, 0);
}

before(async () => {
  // The SDK exporter binds a free port chosen here, never a fixed one (several test files run at once).
  app = await startTestApp({ worker: true, env: { AUTOMATA_TEMPORAL_METRICS_ADDRESS: `127.0.0.1:${await freePort()}` } });
  ({ apiKey } = await app.createApplication());
});
after(async () => {
  await app.close();
});

async function sendTo(subscriptionId: string): Promise<string> {
  const res = await app.request("POST", "/messages", { key: apiKey, body: { subscription_id: subscriptionId, title: "Hi", body: "there" } });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body.data.message_id as string;
}

async function statusOf(id: string): Promise<string> {
  const res = await app.request("GET", `/messages/${id}`, { key: apiKey });
  return res.body.data.status as string;
}

describe("metrics", () => {
  test("a real send counts accepted and sent, the HTTP histogram by route pattern, and a receipt", async () => {
    const accepted0 = await valueOf("automata_messages_total", { event: "accepted", provider: "apns", channel: "push" });
    const sent0 = await valueOf("automata_messages_total", { event: "sent", provider: "apns" });
    const received0 = await valueOf("automata_messages_total", { event: "received", provider: "apns" });
    const http0 = await valueOf("automata_http_request_duration_seconds", { route: "/api/v1/messages", method: "POST", status: "201" });
    const latency0 = await valueOf("automata_provider_request_duration_seconds", { provider: "apns", outcome: "success" });
    const ledger0 = await valueOf("automata_ledger_transfers_total", {});

    const sub = await createPushSubscription(app, apiKey, { type: "iOSPush" });
    const id = await sendTo(sub.id);
    await eventually(async () => (await statusOf(id)) === "successful");

    assert.equal(await valueOf("automata_messages_total", { event: "accepted", provider: "apns", channel: "push" }), accepted0 + 1);
    // The sent transition is counted when its transaction commits, which precedes the API seeing it.
    await eventually(async () => (await valueOf("automata_messages_total", { event: "sent", provider: "apns" })) === sent0 + 1);
    assert.equal(await valueOf("automata_http_request_duration_seconds", { route: "/api/v1/messages", method: "POST", status: "201" }), http0 + 1);
    assert.equal(await valueOf("automata_provider_request_duration_seconds", { provider: "apns", outcome: "success" }), latency0 + 1);
    assert.ok((await valueOf("automata_ledger_transfers_total", {})) >= ledger0, "ledger transfers are counted (apps without limits may make none)");

    const receipt = await app.request("POST", `/messages/${id}/status`, { key: apiKey, body: { status: "received" } });
    assert.equal(receipt.status, 200);
    assert.equal(await valueOf("automata_messages_total", { event: "received", provider: "apns" }), received0 + 1);
    // The GET above used an id: the label is the pattern, and no id appears in any label.
    assert.ok((await valueOf("automata_http_request_duration_seconds", { route: "/api/v1/messages/:id", method: "GET" })) >= 1);
    const text = await registry.metrics();
    assert.ok(!text.includes(id), "message ids never appear in metric labels");
  });

  test("unknown paths are labelled unmatched", async () => {
    const before404 = await valueOf("automata_http_request_duration_seconds", { route: "unmatched", status: "404" });
    const res = await app.request("GET", "/no/such/thing/0193");
    assert.equal(res.status, 404);
    assert.equal(await valueOf("automata_http_request_duration_seconds", { route: "unmatched", status: "404" }), before404 + 1);
  });

  test("a bad- token counts a provider error by reason and a failed message", async () => {
    const sub = await createPushSubscription(app, apiKey, { type: "iOSPush", token: simulatorToken("bad") });
    const errorsBefore = await valueOf("automata_provider_errors_total", { provider: "apns" });
    const failedBefore = await valueOf("automata_messages_total", { event: "failed", provider: "apns" });
    const id = await sendTo(sub.id);
    await eventually(async () => (await statusOf(id)) === "failed");
    await eventually(async () => (await valueOf("automata_messages_total", { event: "failed", provider: "apns" })) === failedBefore + 1);
    assert.equal(await valueOf("automata_provider_errors_total", { provider: "apns" }), errorsBefore + 1);
    const { values } = await registry.getSingleMetric("automata_provider_errors_total")!.get();
    const reasons = values.filter((v) => v.labels.provider === "apns").map((v) => String(v.labels.reason));
    assert.ok(reasons.some((r) => r.length > 0 && r !== "exception"), `a normalised reason is recorded: ${reasons.join(",")}`);
  });

  test("a busy provider counts a retry by class", async () => {
    const sub = await createPushSubscription(app, apiKey, { type: "iOSPush", token: simulatorToken("busy") });
    const before = await valueOf("automata_message_retries_total", {});
    const errored0 = await valueOf("automata_messages_total", { event: "errored" });
    await sendTo(sub.id);
    await eventually(async () => (await valueOf("automata_message_retries_total", {})) > before);
    assert.ok((await valueOf("automata_messages_total", { event: "errored" })) > errored0);
  });

  test("quota: the debit counts ledger transfers after commit, an exhausted allowance counts a rejection", async () => {
    const { apiKey: limitedKey } = await app.createApplication({ quota: { daily_quota: 1 } });
    const sub = await createPushSubscription(app, limitedKey, { type: "iOSPush" });
    const debits0 = await valueOf("automata_ledger_transfers_total", { reason: "quota_debit" });
    const rejections0 = await valueOf("automata_quota_rejections_total", { period: "daily" });
    const first = await app.request("POST", "/messages", { key: limitedKey, body: { subscription_id: sub.id, title: "one" } });
    assert.equal(first.status, 201);
    // Daily and monthly allowances are separate accounts; the daily one is always debited here.
    await eventually(async () => (await valueOf("automata_ledger_transfers_total", { reason: "quota_debit" })) >= debits0 + 1);
    const second = await app.request("POST", "/messages", { key: limitedKey, body: { subscription_id: sub.id, title: "two" } });
    assert.equal(second.status, 403, JSON.stringify(second.body));
    assert.equal(second.body.error.code, "quota_exceeded");
    assert.equal(await valueOf("automata_quota_rejections_total", { period: "daily" }), rejections0 + 1);
  });

  test("GET /metrics answers Prometheus text with automata_ series and the Temporal SDK's", async () => {
    const res = await fetch(`${app.url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain/);
    const text = await res.text();
    assert.match(text, /^automata_messages_total\{/m);
    assert.match(text, /^automata_http_request_duration_seconds_bucket\{/m);
    assert.match(text, /^automata_process_cpu_user_seconds_total /m);
    assert.match(text, /^automata_messages_pending \d+/m);
    assert.doesNotMatch(text, /Temporal SDK metrics unavailable/);
    await eventually(async () => /^automata_temporal_\w+/m.test(await (await fetch(`${app.url}/metrics`)).text()), 20_000);
  });

  test("the worker's metrics server serves /metrics and /healthz", async () => {
    const server = await startMetricsServer(app.deps.logger, 0, "127.0.0.1");
    try {
      const metrics = await fetch(`http://127.0.0.1:${server.port}/metrics`);
      assert.equal(metrics.status, 200);
      assert.match(await metrics.text(), /^automata_messages_total/m);
      const health = await fetch(`http://127.0.0.1:${server.port}/healthz`);
      assert.equal(health.status, 200);
      assert.equal((await fetch(`http://127.0.0.1:${server.port}/nope`)).status, 404);
    } finally {
      await server.close();
    }
  });
});
