/**
 * `npm run bench:campaign -- --recipients 100000`: seeds N push subscriptions (half iOS, half
 * Android, simulator tokens), runs one immediate campaign to all of them through the API on real
 * PostgreSQL and Temporal, and reports recipients/s from the create request to the campaign's
 * completion (every message `successful`), plus peak RSS of this process (API + worker; the
 * simulator runs in its own). The last line is machine-readable.
 */
import crypto from "node:crypto";
import os from "node:os";
import { startBenchPlatform, percentile, cpuByRole } from "./support";
import { benchFlags } from "./flags";
import { newId } from "../src/db/ids";
import { deviceTokenContext } from "../src/subscriptions/device-token";

async function main(): Promise<void> {
  const {
    counts: { recipients },
    providerLatencyMs,
  } = benchFlags({ recipients: 10_000 });
  const platform = await startBenchPlatform({ AUTOMATA_RECEIPT_TIMEOUT: "1h" }, providerLatencyMs);
  const base = `${platform.api.url}/api/v1`;
  // Sampled only while the campaign runs (seeding N subscriptions in this process would otherwise
  // set the peak): whether RSS is flat shows in how it moves from the campaign's start to its end.
  const rssSamples: number[] = [];
  let peakHeap = 0;
  let sampler: NodeJS.Timeout | undefined;
  const startSampling = () => {
    sampler = setInterval(() => {
      const memory = process.memoryUsage();
      rssSamples.push(memory.rss);
      peakHeap = Math.max(peakHeap, memory.heapUsed);
    }, 250);
  };
  try {
    const created = (await (
      await fetch(`${base}/admin/applications`, {
        method: "POST",
        headers: { Authorization: `Bearer ${platform.adminToken}`, "Content-Type": "application/json" },
        body: JSON.stringify({ name: "campaign-bench", rate_limit_tier: "enterprise" }),
      })
    ).json()) as { data: { api_key: string; application_id: string } };
    const applicationId = created.data.application_id;
    const seedStarted = performance.now();
    for (let offset = 0; offset < recipients; offset += 5_000) {
      const rows = Array.from({ length: Math.min(5_000, recipients - offset) }, (_, i) => {
        const token = `ok-${crypto.randomBytes(16).toString("hex")}`;
        return {
          id: newId(),
          application_id: applicationId,
          subscription_type: (offset + i) % 2 ? "AndroidPush" : "iOSPush",
          token_ciphertext: platform.deps.secrets.encrypt(token, deviceTokenContext(applicationId)),
          token_hash: platform.deps.secrets.hash(token),
          subscription_status: 1,
          tags: JSON.stringify({ bench: "yes" }),
        };
      });
      await platform.deps.db("subscriptions").insert(rows);
    }
    console.log(`seeded ${recipients} subscriptions in ${((performance.now() - seedStarted) / 1000).toFixed(1)} s`);

    const cpuBefore = cpuByRole(platform.simulatorPid);
    // What PostgreSQL's sessions wait on while the campaign runs (lock contention shows here).
    const waits = new Map<string, number>();
    let waitSamples = 0;
    const waitSampler = setInterval(() => {
      platform.deps.db
        .raw("select coalesce(wait_event_type || ':' || wait_event, 'running') as wait, count(*)::int as n from pg_stat_activity where state = 'active' and pid <> pg_backend_pid() and backend_type = 'client backend' group by 1")
        .then((result: { rows: Array<{ wait: string; n: number }> }) => {
          waitSamples += 1;
          for (const { wait, n } of result.rows) waits.set(wait, (waits.get(wait) ?? 0) + n);
        })
        .catch(() => undefined);
    }, 200);
    const rssAtStart = process.memoryUsage().rss;
    startSampling();
    const started = performance.now();
    const startedAt = Date.now();
    const res = await fetch(`${base}/campaigns`, {
      method: "POST",
      headers: { "X-API-Key": created.data.api_key, "Content-Type": "application/json" },
      body: JSON.stringify({ name: "bench", title: "Bench", body: "campaign", targeting_criteria: { tags: { bench: "yes" } } }),
    });
    const campaign = (await res.json()) as { data: { campaign_id: string } };
    if (res.status !== 201) throw new Error(`campaign create failed: ${res.status} ${JSON.stringify(campaign)}`);
    const campaignId = campaign.data.campaign_id;
    let pgMs = 0;
    let completedAt = 0;
    // Wait on the campaign row (one indexed read), not on a count of its messages: counting a
    // million rows every half second took a core of PostgreSQL away from the campaign itself.
    for (;;) {
      const t0 = performance.now();
      const campaignRow = (await platform.deps.db("message_campaigns").where("id", campaignId).first("status", "completed_at")) as { status: string; completed_at: Date | null };
      pgMs += performance.now() - t0;
      if (campaignRow.status === "completed") {
        clearInterval(sampler);
        // The workflow completes the campaign once every batch has reported all its messages
        // settled; the row's time, not this poll's, ends the run (same machine, same clock).
        completedAt = campaignRow.completed_at!.getTime();
        break;
      }
      if (campaignRow.status !== "running") throw new Error(`campaign ended ${campaignRow.status}`);
      if (performance.now() - started > 60 * 60_000) throw new Error("timed out after an hour");
      await new Promise((r) => setTimeout(r, 500));
    }
    const [outcome] = (await platform.deps.db("messages")
      .where("campaign_id", campaignId)
      .select(platform.deps.db.raw("count(*) filter (where status = 'successful')::int as sent, count(*)::int as total"))) as Array<{ sent: number; total: number }>;
    if (outcome!.sent !== recipients) throw new Error(`campaign completed with ${outcome!.sent}/${recipients} successful (${outcome!.total} messages)`);
    const seconds = (performance.now() - started) / 1000;
    const cpuAfter = cpuByRole(platform.simulatorPid);
    clearInterval(waitSampler);
    const [span] = await platform.deps.db("messages")
      .where("campaign_id", campaignId)
      .select(platform.deps.db.raw("extract(epoch from (max(sent_at) - min(created_at))) as seconds"));
    const createToCompletedSeconds = (completedAt - startedAt) / 1000;
    const perSecond = recipients / createToCompletedSeconds;
    // Where the time goes: how fast batches start (the campaign workflow's fan-out) and how long
    // one batch takes from its insert to its last send (the batch pipeline).
    const batches = (await platform.deps.db("messages")
      .where("campaign_id", campaignId)
      .groupBy("campaign_batch")
      .orderBy("campaign_batch")
      .select(
        "campaign_batch",
        platform.deps.db.raw("extract(epoch from min(created_at)) * 1000 as created_ms"),
        platform.deps.db.raw("extract(epoch from (max(sent_at) - min(created_at))) * 1000 as span_ms"),
      )) as Array<{ campaign_batch: number; created_ms: string; span_ms: string }>;
    const gaps = batches.slice(1).map((b, i) => Number(b.created_ms) - Number(batches[i]!.created_ms));
    console.log(`batches:               ${batches.length}, one started every ${percentile(gaps, 50).toFixed(0)} ms (p50), p90 ${percentile(gaps, 90).toFixed(0)} ms`);
    console.log(`batch insert → sent:   p50 ${percentile(batches.map((b) => Number(b.span_ms)), 50).toFixed(0)} ms, p90 ${percentile(batches.map((b) => Number(b.span_ms)), 90).toFixed(0)} ms`);
    console.log(`recipients:            ${recipients}${providerLatencyMs > 0 ? ` (provider round trip ${providerLatencyMs} ms)` : ""}`);
    console.log(`create → completed:    ${createToCompletedSeconds.toFixed(1)} s (first message created → last sent: ${Number(span.seconds).toFixed(1)} s; ${(recipients / Number(span.seconds)).toFixed(0)} messages/s over that span)`);
    const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)}`;
    const rssAt = (fraction: number) => rssSamples[Math.min(rssSamples.length - 1, Math.floor(fraction * rssSamples.length))] ?? rssAtStart;
    console.log(`peak RSS (API+worker): ${mib(Math.max(rssAtStart, ...rssSamples))} MiB while the campaign ran (main-thread JS heap peak ${mib(peakHeap)} MiB; the provider simulator runs in its own process)`);
    console.log(`RSS over the campaign: ${[rssAtStart, ...[0.25, 0.5, 0.75, 1].map(rssAt)].map(mib).join(" → ")} MiB (start, each quarter of its time)`);
    const roles = Object.keys(cpuAfter) as Array<keyof typeof cpuAfter>;
    const used = (role: keyof typeof cpuAfter): number => cpuAfter[role] - cpuBefore[role];
    const cores = os.availableParallelism();
    console.log(`CPU while it ran:      ${roles.map((role) => `${role} ${used(role).toFixed(0)} s`).join(", ")} (of ${(seconds * cores).toFixed(0)} core-seconds)`);
    // What limits the run: with every core busy, throughput cannot exceed cores / (CPU per message).
    const perMessageMs = roles.reduce((sum, role) => sum + used(role), 0) * 1000 / recipients;
    console.log(`CPU per message:       ${roles.map((role) => `${role} ${((used(role) * 1e6) / recipients).toFixed(0)} µs`).join(", ")}; ${(perMessageMs * 1000).toFixed(0)} µs in all → at most ${Math.round((cores * 1000) / perMessageMs)} messages/s on ${cores} cores`);
    const topWaits = [...waits].sort((a, b) => b[1] - a[1]).slice(0, 5).map(([wait, n]) => `${wait} ${(n / Math.max(1, waitSamples)).toFixed(1)}`);
    console.log(`PostgreSQL sessions:   ${topWaits.join(", ")} (average active sessions by wait event)`);
    console.log(`bench polling:         ${(pgMs / 1000).toFixed(1)} s waiting on its status reads (wall clock)`);
    console.log(`campaign throughput: ${Math.round(perSecond)} messages/s`);
  } finally {
    clearInterval(sampler);
    await platform.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
