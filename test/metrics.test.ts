import fs from "node:fs";
import { freePort } from "../src/infra/ports";
import path from "node:path";
import { parse as parseYaml } from "yaml";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startTestApp, eventually, type TestApp } from "./support/harness";
import { createPushSubscription, seedPushSubscriptions, simulatorToken } from "./support/fixtures";
import { BACKLOG_SCRAPE_WAIT_MS, registry, setBacklogSource } from "../src/metrics/registry";
import { createDb } from "../src/db/knex";
import { newId } from "../src/db/ids";
import { startMetricsServer } from "../src/metrics/exposition";
import { startApiProcessServers } from "../src/runtime";

let app: TestApp;
let apiKey: string;

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

    const sub = await createPushSubscription(app, apiKey, { type: "iOSPush" });
    const id = await sendTo(sub.id);
    await eventually(async () => (await statusOf(id)) === "successful");

    assert.equal(await valueOf("automata_messages_total", { event: "accepted", provider: "apns", channel: "push" }), accepted0 + 1);
    // The sent transition is counted when its transaction commits, which precedes the API seeing it.
    await eventually(async () => (await valueOf("automata_messages_total", { event: "sent", provider: "apns" })) === sent0 + 1);
    assert.equal(await valueOf("automata_http_request_duration_seconds", { route: "/api/v1/messages", method: "POST", status: "201" }), http0 + 1);
    assert.equal(await valueOf("automata_provider_request_duration_seconds", { provider: "apns", outcome: "success" }), latency0 + 1);

    const receipt = await app.request("POST", `/messages/${id}/status`, { key: apiKey, body: { status: "received" } });
    assert.equal(receipt.status, 200);
    assert.equal(await valueOf("automata_messages_total", { event: "received", provider: "apns" }), received0 + 1);
    // The GET above used an id: the label is the pattern, and no id appears in any label.
    assert.ok((await valueOf("automata_http_request_duration_seconds", { route: "/api/v1/messages/:id", method: "GET" })) >= 1);
    const text = await registry.metrics();
    assert.ok(!text.includes(id), "message ids never appear in metric labels");
  });

  test("the delivery error ratio (documented alert and dashboard panel) counts provider failures, not receipt timeouts", async () => {
    const root = path.resolve(__dirname, "..");
    const docs = fs.readFileSync(path.join(root, "docs/operations.md"), "utf8");
    const alert = documentedAlerts(docs).find((r) => r.alert === "AutomataDeliveryErrorRate");
    const dashboard = JSON.parse(fs.readFileSync(path.join(root, "dashboards/automata-signal.json"), "utf8")) as DashboardJson;
    const panel = allPanels(dashboard.panels).find((p) => p.title === "Delivery error ratio");
    assert.ok(alert && panel?.targets?.[0]?.expr);
    const numerators = [alert.expr, panel.targets[0].expr].map(numeratorSelectors);
    const errorsCounted = async () => Promise.all(numerators.map(async (selectors) => (await Promise.all(selectors.map(selectorSum))).reduce((a, b) => a + b, 0)));

    // Its own app: a 2 s receipt timeout turns a delivered message into failed/receipt_timeout quickly.
    const short = await startTestApp({ worker: true, env: { AUTOMATA_RECEIPT_TIMEOUT: "2s" } });
    try {
      const { apiKey: key } = await short.createApplication();
      const send = async (token?: string) => {
        const sub = await createPushSubscription(short, key, token ? { type: "iOSPush", token } : { type: "iOSPush" });
        const res = await short.request("POST", "/messages", { key, body: { subscription_id: sub.id, title: "Hi", body: "there" } });
        assert.equal(res.status, 201, JSON.stringify(res.body));
        const id = res.body.data.message_id as string;
        return eventually(async () => {
          const got = await short.request("GET", `/messages/${id}`, { key });
          return got.body.data.status === "failed" ? (got.body.data.error_code as string) : undefined;
        }, 30_000);
      };
      const failed0 = await valueOf("automata_messages_total", { event: "failed" });
      const before = await errorsCounted();
      assert.equal(await send(), "receipt_timeout");
      await eventually(async () => (await valueOf("automata_messages_total", { event: "failed" })) === failed0 + 1);
      assert.deepEqual(await errorsCounted(), before, "a delivered message whose receipt timed out is not a delivery error");
      // A provider refusal is one, for the alert and the panel alike.
      assert.equal(await send(simulatorToken("bad")), "invalid_token");
      const after = await errorsCounted();
      after.forEach((n, i) => assert.ok(n > before[i]!, `${i === 0 ? "alert" : "panel"} counts the refused send`));
    } finally {
      await short.close();
      // Its API made itself the backlog source; hand it back to this file's app.
      setBacklogSource(app.deps.db);
    }
  });

  test("unknown paths are labelled unmatched", async () => {
    const before404 = await valueOf("automata_http_request_duration_seconds", { route: "unmatched", status: "404" });
    const res = await app.request("GET", "/no/such/thing/0193");
    assert.equal(res.status, 404);
    assert.equal(await valueOf("automata_http_request_duration_seconds", { route: "unmatched", status: "404" }), before404 + 1);
  });

  test("a request whose client gave up before the answer is still recorded, with status 499", async () => {
    const { id: applicationId, apiKey: key } = await app.createApplication();
    const sub = await createPushSubscription(app, key, { type: "iOSPush", token: simulatorToken("ok") });
    const messageId = newId();
    await app.deps.db("messages").insert({ id: messageId, application_id: applicationId, subscription_id: sub.id, subscription_type: "iOSPush", status: "successful", sent_at: new Date(), body: "b" });
    const labels = { route: "/api/v1/messages/:id/status", method: "POST", status: "499" };
    const before = await valueOf("automata_http_request_duration_seconds", labels);
    // The receipt waits for the row (up to 5 s) while another transaction holds it; the client gives up first.
    const holder = await app.deps.db.transaction();
    try {
      await holder("messages").where("id", messageId).forUpdate().first("id");
      const abandoned = fetch(`${app.url}/api/v1/messages/${messageId}/status`, {
        method: "POST",
        headers: { "X-API-Key": key, "Content-Type": "application/json" },
        body: JSON.stringify({ status: "received" }),
        signal: AbortSignal.timeout(500),
      });
      await assert.rejects(abandoned, (error: Error) => error.name === "TimeoutError");
    } finally {
      await holder.rollback();
    }
    await eventually(async () => ((await valueOf("automata_http_request_duration_seconds", labels)) === before + 1 ? true : undefined), 10_000, 100);
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

  test("campaign sends feed the provider metrics like single sends: duration by outcome, errors by reason, retries by class", async () => {
    const { id: appId, apiKey: key } = await app.createApplication({ rate_limit_tier: "enterprise" });
    const group = `g-${Date.now()}`;
    // Seeding alternates iOS and Android: ok (apns), ok (fcm), bad (apns), busy (fcm).
    const prefixes = ["ok", "ok", "bad", "busy"] as const;
    await seedPushSubscriptions(app, appId, 4, { prefix: (i) => prefixes[i]!, tags: () => ({ group }) });
    const series = {
      apnsSuccess: ["automata_provider_request_duration_seconds", { provider: "apns", outcome: "success" }],
      fcmSuccess: ["automata_provider_request_duration_seconds", { provider: "fcm", outcome: "success" }],
      apnsPermanent: ["automata_provider_request_duration_seconds", { provider: "apns", outcome: "permanent" }],
      fcmTemporary: ["automata_provider_request_duration_seconds", { provider: "fcm", outcome: "temporary" }],
      apnsErrors: ["automata_provider_errors_total", { provider: "apns" }],
      fcmErrors: ["automata_provider_errors_total", { provider: "fcm" }],
      rateLimitedRetries: ["automata_message_retries_total", { class: "rate_limited" }],
    } as const;
    const read = async () => Object.fromEntries(await Promise.all(Object.entries(series).map(async ([k, [name, labels]]) => [k, await valueOf(name, labels)] as const)));
    const before = await read();
    const created = await app.request("POST", "/campaigns", { key, body: { name: "metrics", title: "Hi", body: "all", targeting_criteria: { tags: { group } } } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    await eventually(async () => {
      const rows = (await app.deps.db("messages").where("campaign_id", created.body.data.campaign_id).select("status")) as Array<{ status: string }>;
      return rows.length === 4 && rows.every((r) => r.status !== "pending");
    });
    const afterSend = await eventually(async () => {
      const now = await read();
      return now.rateLimitedRetries! > before.rateLimitedRetries! ? now : undefined;
    });
    // At least: earlier tests' messages (the busy one above retries every few minutes) count in the same process-wide series.
    for (const key of Object.keys(series)) assert.ok(afterSend[key]! - before[key]! >= 1, `${key} counted the campaign's send (${before[key]} → ${afterSend[key]})`);
  });

  test("the provider pool gauges show a campaign's FCM sends in flight on the pool's 16 sockets and the rest queued", async () => {
    const { id: appId, apiKey: key } = await app.createApplication({ rate_limit_tier: "enterprise" });
    const group = `pool-${Date.now()}`;
    // 40 iOS and 40 Android, answered after 2 s: one chunk, whose 40 FCM sends share 16 sockets.
    await seedPushSubscriptions(app, appId, 80, { prefix: () => "slow", tags: () => ({ group }) });
    const created = await app.request("POST", "/campaigns", { key, body: { name: "pool", title: "Hi", body: "all", targeting_criteria: { tags: { group } } } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const busy = await eventually(async () => {
      const fcm = {
        inFlight: await valueOf("automata_provider_requests_in_flight", { provider: "fcm" }),
        queued: await valueOf("automata_provider_requests_queued", { provider: "fcm" }),
        connections: await valueOf("automata_provider_connections", { provider: "fcm" }),
      };
      return fcm.inFlight === 16 && fcm.queued >= 8 ? fcm : undefined;
    }, 30_000, 50);
    // Earlier tests' idle keep-alive sockets may still be open besides the 16 in use.
    assert.ok(busy.connections >= 16, JSON.stringify(busy));
    assert.ok((await valueOf("automata_provider_requests_in_flight", { provider: "apns" })) + (await valueOf("automata_provider_connections", { provider: "apns" })) > 0);
    await eventually(async () => (await valueOf("automata_provider_requests_in_flight", { provider: "fcm" })) === 0 && (await valueOf("automata_provider_requests_queued", { provider: "fcm" })) === 0, 30_000, 200);
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
    // A refused send to a user's two devices is two refused messages, not one refused request.
    await createPushSubscription(app, limitedKey, { type: "iOSPush", externalId: "rejected-twice" });
    await createPushSubscription(app, limitedKey, { type: "AndroidPush", externalId: "rejected-twice" });
    const fanOut = await app.request("POST", "/messages", { key: limitedKey, body: { external_id: "rejected-twice", title: "three" } });
    assert.equal(fanOut.status, 403, JSON.stringify(fanOut.body));
    assert.equal(await valueOf("automata_quota_rejections_total", { period: "daily" }), rejections0 + 3);
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

  test("the production API serves /metrics on its metrics port only, never on the public API port", async () => {
    const servers = await startApiProcessServers(app.deps, { port: 0, host: "127.0.0.1", metricsPort: 0 });
    try {
      const onApiPort = await fetch(`${servers.api.url}/metrics`);
      assert.equal(onApiPort.status, 404);
      assert.equal(((await onApiPort.json()) as { error: { code: string } }).error.code, "resource_not_found");
      assert.equal((await fetch(`${servers.api.url}/healthz`)).status, 200, "the API itself is up");
      const onMetricsPort = await fetch(`http://127.0.0.1:${servers.metrics.port}/metrics`);
      assert.equal(onMetricsPort.status, 200);
      assert.match(await onMetricsPort.text(), /^automata_http_request_duration_seconds_bucket\{/m);
    } finally {
      await servers.close();
    }
  });

  test("one scrape reads the backlog with one query for both backlog gauges", async () => {
    let queries = 0;
    // The real pool, counted: prom-client collects the two gauges at the same time.
    const counted = new Proxy(app.deps.db, {
      get: (target, property, receiver) =>
        property === "raw" ? (...args: Parameters<typeof target.raw>) => ((queries += 1), target.raw(...args)) : Reflect.get(target, property, receiver),
    });
    setBacklogSource(counted);
    try {
      const text = await (await fetch(`${app.url}/metrics`)).text();
      assert.match(text, /^automata_messages_pending \d+/m);
      assert.match(text, /^automata_messages_oldest_pending_age_seconds [\d.]+/m);
      assert.equal(queries, 1);
      await fetch(`${app.url}/metrics`);
      assert.equal(queries, 1, "a second scrape within 10 s reads the cache");
    } finally {
      setBacklogSource(app.deps.db);
    }
  });

  test("the backlog gauges leave their sample out while PostgreSQL cannot be read, instead of repeating the last value", async () => {
    assert.match(await (await fetch(`${app.url}/metrics`)).text(), /^automata_messages_pending \d+/m, "a real reading first");
    const unreachable = createDb(`postgres://nobody:x@127.0.0.1:${await freePort()}/none`, 1);
    // The 10 s cache would answer the reading above; a new source starts without one.
    setBacklogSource(unreachable);
    try {
      const errors0 = await valueOf("automata_metrics_collect_errors_total", { collector: "backlog" });
      const text = await (await fetch(`${app.url}/metrics`)).text();
      assert.doesNotMatch(text, /^automata_messages_pending /m, "no reading, no sample (not the last one, not 0)");
      assert.doesNotMatch(text, /^automata_messages_oldest_pending_age_seconds /m);
      assert.match(text, /^automata_messages_total\{/m, "the rest of the scrape still answers");
      assert.ok((await valueOf("automata_metrics_collect_errors_total", { collector: "backlog" })) > errors0);
    } finally {
      setBacklogSource(app.deps.db);
      await unreachable.destroy();
    }
    assert.match(await (await fetch(`${app.url}/metrics`)).text(), /^automata_messages_pending \d+/m, "back once the database answers");
  });

  test("a backlog query that cannot get a connection holds the scrape at most 2 s: the rest of the scrape answers, the backlog gauges leave their sample out, and the next scrape shows the late reading", async () => {
    // A real pool of one connection, busy with a long statement: the backlog query waits in its queue.
    const busy = createDb(process.env.DATABASE_URL!, 1);
    // then(): a knex query runs only once something awaits it.
    const holding = busy.raw("select pg_sleep(6) /* metrics-busy-pool */").then(() => undefined);
    await eventually(async () => ((await app.deps.db.raw(`SELECT 1 FROM pg_stat_activity WHERE query LIKE 'select pg_sleep(6) /* metrics-busy-pool */%'`)).rows.length > 0 ? true : undefined), 5_000, 50);
    setBacklogSource(busy);
    try {
      const timeouts0 = await valueOf("automata_metrics_collect_errors_total", { collector: "backlog", error: "timeout" });
      const started = Date.now();
      const text = await (await fetch(`${app.url}/metrics`)).text();
      const tookMs = Date.now() - started;
      assert.ok(tookMs < BACKLOG_SCRAPE_WAIT_MS + 2_000, `the scrape took ${tookMs} ms`);
      assert.doesNotMatch(text, /^automata_messages_pending /m, "no reading, no sample");
      assert.match(text, /^automata_messages_total\{/m, "the rest of the scrape answers");
      assert.equal(await valueOf("automata_metrics_collect_errors_total", { collector: "backlog", error: "timeout" }), timeouts0 + 1);

      // A query that always outlasts the scrape's wait must still be seen: the next scrape shows its answer.
      await holding;
      // The pool hands its one connection out in order: this returns once the queued backlog query has.
      await busy.raw("select 1");
      // Past the 10 s cache, so only the late reading can answer; and with the pool gone, no new query can.
      await new Promise((resolve) => setTimeout(resolve, 10_500));
      await busy.destroy();
      const late = await (await fetch(`${app.url}/metrics`)).text();
      assert.match(late, /^automata_messages_pending \d+/m, "the reading that finished after its scrape");
      assert.match(late, /^automata_messages_oldest_pending_age_seconds [\d.]+/m, "both gauges of that scrape");
      assert.doesNotMatch(await (await fetch(`${app.url}/metrics`)).text(), /^automata_messages_pending /m, "shown once, not repeated");
    } finally {
      await holding;
      setBacklogSource(app.deps.db);
      await busy.destroy();
    }
  });

  // Last in this file: the tests above made every kind of series (sends, a provider error, a retry, a
  // quota rejection, ledger transfers, the Temporal SDK's), so each query must find its series in a real scrape.
  test("every series the Grafana dashboard and the documented alerts query is exported, with the labels they use", async () => {
    const text = await eventually(async () => {
      const body = await (await fetch(`${app.url}/metrics`)).text();
      return /^automata_temporal_workflow_task_schedule_to_start_latency_seconds_bucket\{/m.test(body) ? body : undefined;
    }, 20_000);
    const labelsOf = new Map<string, Set<string>>();
    for (const line of text.split("\n")) {
      const typed = /^# TYPE (\w+) /.exec(line);
      if (typed) labelsOf.set(typed[1]!, labelsOf.get(typed[1]!) ?? new Set());
      const sample = /^(\w+)(?:\{([^}]*)\})? /.exec(line);
      if (!sample) continue;
      const names = labelsOf.get(sample[1]!) ?? new Set<string>();
      for (const [, label] of (sample[2] ?? "").matchAll(/(\w+)="/g)) names.add(label!);
      labelsOf.set(sample[1]!, names);
    }
    const root = path.resolve(__dirname, "..");
    const dashboard = JSON.parse(fs.readFileSync(path.join(root, "dashboards/automata-signal.json"), "utf8")) as DashboardJson;
    const docs = fs.readFileSync(path.join(root, "docs/operations.md"), "utf8");
    const queries = [
      ...dashboardQueries(dashboard).map((q) => ({ where: "dashboard", expr: q })),
      ...documentedAlerts(docs).map((r) => ({ where: `alert ${r.alert}`, expr: r.expr })),
    ];
    assert.ok(queries.length > 25);
    // job and instance come from the scrape, le from the histogram's buckets.
    const fromPrometheus = new Set(["job", "instance"]);
    // Prometheus's own `up`, for alerts on a process that is not scraped at all: its job names must
    // be the scrape jobs deploy/prometheus.yml defines.
    const scrapeJobs = new Set([...fs.readFileSync(path.join(root, "deploy/prometheus.yml"), "utf8").matchAll(/job_name:\s*(\S+)/g)].map((m) => m[1]!));
    for (const { where, expr } of queries) {
      const used = [...expr.matchAll(/\b(automata_\w+)(?:\{([^}]*)\})?/g)];
      for (const [, jobs] of expr.matchAll(/\bup\{job=~?"([^"]+)"\}/g)) {
        for (const job of jobs!.split("|")) assert.ok(scrapeJobs.has(job), `${where}: job ${job} is scraped by deploy/prometheus.yml`);
      }
      if (used.length === 0 && /\bup\{job=/.test(expr)) continue;
      assert.ok(used.length > 0, `${where}: ${expr} queries one of our series`);
      // Grouping labels must exist on the series the aggregation reads (each query reads one metric).
      const grouping = [...expr.matchAll(/\bby\s*\(([^)]*)\)/g)].flatMap(([, by]) => by!.split(",").map((l) => l.trim()).filter(Boolean));
      for (const [, name, selector] of used) {
        const labels = labelsOf.get(name!);
        assert.ok(labels, `${where}: ${name} is in a real scrape of /metrics`);
        const matchers = [...(selector ?? "").matchAll(/(\w+)\s*(?:=~|!~|!=|=)/g)].map((m) => m[1]!);
        for (const label of [...matchers, ...grouping]) {
          if (fromPrometheus.has(label) || (label === "le" && name!.endsWith("_bucket"))) continue;
          assert.ok(labels.has(label), `${where}: ${name} has a "${label}" label (has: ${[...labels].join(", ")})`);
        }
      }
    }
    // The page names only metrics that exist (a trailing _ or _* is a family prefix).
    for (const [, name, family] of docs.matchAll(/`(automata_\w+?)(_\*)?`/g)) {
      const prefix = family ? `${name}_` : name!.endsWith("_") ? name! : undefined;
      const found = prefix ? [...labelsOf.keys()].some((n) => n.startsWith(prefix)) : labelsOf.has(name!);
      assert.ok(found, `docs/operations.md names ${name}${family ?? ""}, which /metrics exports`);
    }
  });
});

interface DashboardPanel {
  title?: string;
  targets?: Array<{ expr?: string }>;
  panels?: DashboardPanel[];
}
interface DashboardJson {
  panels: DashboardPanel[];
  templating?: { list: Array<{ query?: string | { query?: string } }> };
}

/** Every panel of a dashboard, also those inside collapsed rows. */
function allPanels(panels: DashboardPanel[]): DashboardPanel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

/** Every PromQL query of a dashboard: panel targets and template variables. */
function dashboardQueries(dashboard: DashboardJson): string[] {
  const targets = allPanels(dashboard.panels).flatMap((p) => (p.targets ?? []).map((t) => t.expr ?? ""));
  const variables = (dashboard.templating?.list ?? []).map((v) => (typeof v.query === "string" ? v.query : v.query?.query ?? "")).filter((q) => q.includes("automata_"));
  return [...targets, ...variables].filter(Boolean);
}

/** The alerting rules of the operations page's YAML block. */
function documentedAlerts(docs: string): Array<{ alert: string; expr: string }> {
  const block = /```yaml\n(groups:[\s\S]*?)```/.exec(docs);
  assert.ok(block, "docs/operations.md has its alert rules block");
  return (parseYaml(block[1]!) as { groups: Array<{ rules: Array<{ alert: string; expr: string }> }> }).groups.flatMap((g) => g.rules);
}

/** The series selectors left of a ratio's top-level "/" (outside quotes, braces and brackets). */
function numeratorSelectors(expr: string): string[] {
  let depth = 0;
  let quoted = false;
  let end = expr.length;
  for (let i = 0; i < expr.length; i++) {
    const c = expr[i]!;
    if (c === '"') quoted = !quoted;
    else if (!quoted && (c === "{" || c === "[")) depth++;
    else if (!quoted && (c === "}" || c === "]")) depth--;
    else if (!quoted && depth === 0 && c === "/") {
      end = i;
      break;
    }
  }
  return [...expr.slice(0, end).matchAll(/\bautomata_\w+(?:\{[^}]*\})?/g)].map((m) => m[0]);
}

/**
 * What one PromQL selector (`name{label op "value", …}`) sums to in this process's registry:
 * enough to tell which events a query counts. job/instance matchers come from the scrape and are ignored.
 */
async function selectorSum(selector: string): Promise<number> {
  const [, name, body] = /^(\w+)(?:\{([^}]*)\})?$/.exec(selector)!;
  const metric = registry.getSingleMetric(name!) ?? registry.getSingleMetric(name!.replace(/_(count|sum|bucket)$/, ""));
  assert.ok(metric, `${name} is registered`);
  const matchers = [...(body ?? "").matchAll(/(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"/g)].filter(([, label]) => label !== "job" && label !== "instance");
  const { values } = await metric.get();
  return values
    .filter((v) => ((v as { metricName?: string }).metricName ?? name) === name)
    .filter((v) =>
      matchers.every(([, label, op, want]) => {
        const have = String((v.labels as Record<string, unknown>)[label!] ?? "");
        const full = new RegExp(`^(?:${want})$`);
        return op === "=" ? have === want : op === "!=" ? have !== want : op === "=~" ? full.test(have) : !full.test(have);
      }),
    )
    .reduce((sum, v) => sum + v.value, 0);
}
