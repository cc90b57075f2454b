/**
 * `npm run bench:send [-- --messages 1000 --concurrency 16]`: individual sends through the HTTP
 * API against the provider simulator, on real PostgreSQL and Temporal. Phase 1 saturates the API
 * (accepted/s); phase 2 sends at half that rate, open loop, and reports the API latency and the
 * accept → successful time users see below saturation. The last line is machine-readable and
 * combines the two: `send latency: p95 <paced p95> ms, accepted <saturation>/s`.
 */
import crypto from "node:crypto";
import { startBenchPlatform, percentile } from "./support";
import { benchFlags } from "./flags";

async function main(): Promise<void> {
  const {
    counts: { messages, concurrency },
    providerLatencyMs,
  } = benchFlags({ messages: 1000, concurrency: 16 });
  const subscriptionCount = Math.min(messages, 500);
  const platform = await startBenchPlatform({ AUTOMATA_RECEIPT_TIMEOUT: "1h" }, providerLatencyMs);
  const base = `${platform.api.url}/api/v1`;
  console.log(`metrics: ${platform.api.url}/metrics (live while this runs)`);
  try {
    const app = await (
      await fetch(`${base}/admin/applications`, {
        method: "POST",
        headers: { Authorization: `Bearer ${platform.adminToken}`, "Content-Type": "application/json" },
        body: JSON.stringify({ name: "bench", rate_limit_tier: "enterprise" }),
      })
    ).json() as { data: { api_key: string; application_id: string } };
    const key = app.data.api_key;
    const headers = { "X-API-Key": key, "Content-Type": "application/json" };
    // The enterprise tier allows 5,000 requests a minute; the benchmark measures the pipeline, not the limiter.
    await platform.deps.db("applications").where("id", app.data.application_id).update({ rate_limit_tier: "enterprise" });

    const subscriptionIds: string[] = [];
    for (let i = 0; i < subscriptionCount; i++) {
      const res = await fetch(`${base}/subscriptions`, {
        method: "POST",
        headers,
        body: JSON.stringify({ type: i % 2 ? "AndroidPush" : "iOSPush", token: `ok-${crypto.randomBytes(16).toString("hex")}` }),
      });
      const body = (await res.json()) as { data: { subscription_id?: string; id?: string } };
      subscriptionIds.push(body.data.subscription_id ?? body.data.id!);
    }
    // Warm up: workflow bundle, provider connections, JIT.
    for (let i = 0; i < 20; i++) {
      await fetch(`${base}/messages`, { method: "POST", headers, body: JSON.stringify({ subscription_id: subscriptionIds[i % subscriptionIds.length], body: "warm-up" }) });
    }

    const send = async (i: number, ids: string[], latencies: number[]) => {
      const t0 = performance.now();
      const res = await fetch(`${base}/messages`, {
        method: "POST",
        headers,
        body: JSON.stringify({ subscription_id: subscriptionIds[i % subscriptionIds.length], title: "Bench", body: `message ${i}` }),
      });
      const body = (await res.json()) as { data?: { message_id: string } };
      latencies.push(performance.now() - t0);
      if (res.status !== 201 || !body.data) throw new Error(`send failed: ${res.status} ${JSON.stringify(body)}`);
      ids.push(body.data.message_id);
    };
    const waitUntilSent = async (ids: string[]) => {
      const deadline = Date.now() + 15 * 60_000;
      while (Date.now() < deadline) {
        const [row] = await platform.deps.db("messages").whereIn("id", ids).whereIn("status", ["pending", "errored"]).count<{ count: number }[]>({ count: "*" });
        if (Number(row!.count) === 0) return;
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    const acceptToSent = async (ids: string[]) =>
      (await platform.deps.db("messages").whereIn("id", ids).where("status", "successful").select(platform.deps.db.raw("extract(epoch from (sent_at - created_at)) * 1000 as ms"))).map((t: { ms: string }) => Number(t.ms));

    // Phase 1, saturation: `concurrency` clients send back to back; how many sends/s the platform accepts.
    const saturationIds: string[] = [];
    const saturationLatencies: number[] = [];
    let next = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < messages) await send(next++, saturationIds, saturationLatencies);
      }),
    );
    const acceptedPerSecond = saturationIds.length / ((performance.now() - started) / 1000);
    await waitUntilSent(saturationIds);
    const drainedPerSecond = saturationIds.length / ((performance.now() - started) / 1000);

    // Phase 2, paced: an open-loop load at half the saturation rate; latency as users see it.
    const rate = Math.max(1, Math.floor(acceptedPerSecond / 2));
    const pacedCount = Math.min(messages, rate * 20);
    const pacedIds: string[] = [];
    const pacedLatencies: number[] = [];
    const pacedStart = performance.now();
    const inFlight: Promise<void>[] = [];
    for (let i = 0; i < pacedCount; i++) {
      const due = pacedStart + (i * 1000) / rate;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      inFlight.push(send(messages + i, pacedIds, pacedLatencies));
    }
    await Promise.all(inFlight);
    await waitUntilSent(pacedIds);
    const pacedToSent = await acceptToSent(pacedIds);
    const saturatedToSent = await acceptToSent(saturationIds);
    const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);
    const fmt = (values: number[]) => `p50 ${percentile(values, 50).toFixed(1)} ms, p95 ${percentile(values, 95).toFixed(1)} ms, p99 ${percentile(values, 99).toFixed(1)} ms`;

    console.log(`saturation (${concurrency} clients, ${saturationIds.length} messages):`);
    console.log(`  accepted ${acceptedPerSecond.toFixed(1)}/s, all successful at ${drainedPerSecond.toFixed(1)}/s`);
    console.log(`  API latency ${fmt(saturationLatencies)}; accept → successful mean ${mean(saturatedToSent).toFixed(0)} ms`);
    console.log(`paced (${rate}/s open loop, ${pacedIds.length} messages):`);
    console.log(`  API latency ${fmt(pacedLatencies)}`);
    console.log(`  accept → successful mean ${mean(pacedToSent).toFixed(0)} ms, p95 ${percentile(pacedToSent, 95).toFixed(0)} ms`);
    console.log(`send latency: p95 ${Math.round(percentile(pacedLatencies, 95))} ms, accepted ${Math.round(acceptedPerSecond)}/s`);
  } finally {
    await platform.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
