import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import crypto from "node:crypto";
import type { Logger } from "pino";
import { createLogger } from "../src/logger";
import { startEmbeddedPostgres } from "../src/infra/postgres";
import { freePort } from "../src/infra/ports";
import { createDb, migrateLatest } from "../src/db/knex";
import { startTemporalDevServer } from "../temporal/launcher";
import { startWorker } from "../src/worker/run-worker";
import { installTemporalRuntimeLogger } from "../src/infra/process";
import { createReconcilerActivities } from "../activities/reconciler";
import type { Deps } from "../src/deps";
import { eventually } from "./support/harness";
import { startPlatform, type Platform } from "./support/platform";
import { ledgerBalanceMismatches } from "../src/quota/quota";
import { seedPushSubscriptions, simulatorToken } from "./support/fixtures";

// Non-negotiable 3: restarts of the database or of Temporal lose nothing. Each test runs the real
// API, worker and simulator against a PostgreSQL or Temporal of its own, restarts it while sends
// are in flight, and checks that every accepted message still ends successful, exactly once in
// the database and in the ledger.

const logger: Logger = createLogger("fatal", "restarts-test");
// The SDK's own retry warnings while a server is down would flood the test output otherwise.
installTemporalRuntimeLogger(logger);
const MESSAGES = 12;

/**
 * Restarts the platform's worker whenever it stops, as fly and compose do (`npm start` instead
 * stops the whole platform, saying why): a worker may give up while its Temporal server is away.
 * Answers the function that ends the supervision.
 */
function superviseWorker(platform: Platform, temporalAddress: string): () => void {
  let supervising = true;
  void (async () => {
    while (supervising) {
      await platform.worker.done.catch(() => undefined);
      while (supervising) {
        try {
          platform.worker = await startWorker(platform.deps, temporalAddress);
          break;
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 1_000)); // Temporal not back yet
        }
      }
    }
  })();
  return () => {
    supervising = false;
  };
}

/** An application with one `slow-` subscription per message, so sends are still in flight when the restart comes. */
async function sendMessages(platform: Platform): Promise<{ applicationId: string; apiKey: string; subscriptionIds: string[]; messageIds: string[] }> {
  const app = await platform.call("POST", "/admin/applications", { admin: true, body: { name: `restarts-${crypto.randomUUID()}`, rate_limit_tier: "enterprise" } });
  assert.equal(app.status, 201, JSON.stringify(app.body));
  const apiKey: string = app.body.data.api_key;
  const subscriptionIds: string[] = [];
  for (let i = 0; i < MESSAGES; i++) {
    const sub = await platform.call("POST", "/subscriptions", { key: apiKey, body: { type: i % 2 === 0 ? "iOSPush" : "AndroidPush", token: simulatorToken("slow") } });
    assert.equal(sub.status, 201, JSON.stringify(sub.body));
    subscriptionIds.push(sub.body.data.subscription_id);
  }
  const messageIds: string[] = [];
  for (const id of subscriptionIds) {
    const sent = await platform.call("POST", "/messages", { key: apiKey, body: { subscription_id: id, title: "restart", body: "still arrives" } });
    assert.equal(sent.status, 201, JSON.stringify(sent.body));
    messageIds.push(sent.body.data.message_id);
  }
  return { applicationId: app.body.data.application_id, apiKey, subscriptionIds, messageIds };
}

/** Some of these messages are still unsent: the outage that follows hits sends in flight, not a finished run. */
async function assertSomeInFlight(deps: Deps, messageIds: string[]): Promise<void> {
  const unsent = await deps.db("messages").whereIn("id", messageIds).whereNot("status", "successful").count<{ count: string }[]>({ count: "*" });
  assert.ok(Number(unsent[0]!.count) > 0, "every message was already sent before the outage");
}

/** Every message ends successful, with one `sent` transition and one net quota unit each. */
async function assertAllSentOnce(deps: Deps, applicationId: string, messageIds: string[]): Promise<void> {
  await eventually(async () => {
    const rows = (await deps.db("messages").whereIn("id", messageIds).select("status")) as Array<{ status: string }>;
    return rows.length === messageIds.length && rows.every((r) => r.status === "successful");
  }, 90_000, 500);
  const events = (await deps.db("message_events").whereIn("message_id", messageIds).where("to_status", "successful").select("message_id")) as Array<{ message_id: string }>;
  assert.deepEqual(events.map((e) => e.message_id).sort(), [...messageIds].sort(), "one successful transition per message");
  const used = (await deps.db("messages").where("application_id", applicationId).count<{ count: string }[]>({ count: "*" }))[0]!.count;
  assert.equal(Number(used), messageIds.length, "no message row was lost or duplicated");
}

/** A server of a test's own that it can stop and start again on the same data and port. */
interface RestartableServer {
  /** Where the platform reaches it (a database URL or a Temporal address); a restart keeps it. */
  address: string;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops it for good and deletes its data. */
  remove(): Promise<void>;
}

/**
 * Keeps whatever `start` starts (on data in `dir`) restartable: stop and start again on the same
 * data and port; remove stops it and deletes `dir`.
 */
async function restartableIn<S extends { stop(): Promise<void> }>(dir: string, start: () => Promise<S>, addressOf: (server: S) => string): Promise<RestartableServer> {
  let server = await start();
  return {
    address: addressOf(server),
    stop: () => server.stop(),
    start: async () => {
      server = await start();
    },
    remove: async () => {
      await server.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A migrated embedded PostgreSQL in a temporary directory. */
async function restartablePostgres(): Promise<RestartableServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "automata-restart-pg-"));
  fs.chmodSync(dir, 0o755);
  const port = await freePort();
  const postgres = await restartableIn(dir, () => startEmbeddedPostgres({ dataDir: dir, port, database: "restarts", logger }), (server) => server.url);
  const migrator = createDb(postgres.address, 1);
  await migrateLatest(migrator);
  await migrator.destroy();
  return postgres;
}

/** A Temporal dev server on SQLite in a temporary directory. */
async function restartableTemporal(): Promise<RestartableServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "automata-restart-temporal-"));
  const port = await freePort();
  return restartableIn(dir, () => startTemporalDevServer({ port, uiPort: 0, namespace: "default", dbFile: path.join(dir, "temporal.db"), headless: true, logger }), (server) => server.address);
}

/**
 * Runs `body` on a platform whose PostgreSQL or Temporal is a restartable server of its own (the
 * other one is the test run's), with its worker supervised, and tears everything down after.
 */
async function withOwnServer(kind: "postgres" | "temporal", body: (platform: Platform, server: RestartableServer) => Promise<void>): Promise<void> {
  const server = kind === "postgres" ? await restartablePostgres() : await restartableTemporal();
  const temporalAddress = kind === "temporal" ? server.address : process.env.TEMPORAL_ADDRESS!;
  const platform = await startPlatform(logger, kind === "postgres" ? server.address : process.env.DATABASE_URL!, temporalAddress);
  const stopSupervising = superviseWorker(platform, temporalAddress);
  try {
    await body(platform, server);
  } finally {
    stopSupervising();
    await platform.stop();
    await server.remove();
  }
}

test("PostgreSQL restarted while sends are in flight: the API answers 503 meanwhile, and every accepted message still ends successful once", { timeout: 240_000 }, () =>
  withOwnServer("postgres", async (platform, postgres) => {
    const { applicationId, apiKey, subscriptionIds, messageIds } = await sendMessages(platform);
    await eventually(async () => platform.simulator.simulator.totalRequests() > 0, 60_000, 20);
    await assertSomeInFlight(platform.deps, messageIds);
    await postgres.stop();

    const refused = await platform.call("POST", "/messages", { key: apiKey, body: { subscription_id: subscriptionIds[0], title: "while down" } });
    assert.equal(refused.status, 503, JSON.stringify(refused.body));
    assert.equal(refused.body.error.code, "service_unavailable");

    await new Promise((resolve) => setTimeout(resolve, 2_000));
    await postgres.start();
    await assertAllSentOnce(platform.deps, applicationId, messageIds);
  }),
);

test("Temporal restarted while sends are in flight: messages accepted before and during the outage all end successful once", { timeout: 240_000 }, () =>
  withOwnServer("temporal", async (platform, temporal) => {
    const { applicationId, apiKey, subscriptionIds, messageIds } = await sendMessages(platform);
    await eventually(async () => platform.simulator.simulator.totalRequests() > 0, 60_000, 20);
    await assertSomeInFlight(platform.deps, messageIds);
    await temporal.stop();

    // Accepted means durable: the rows are written, and the reconciler starts their workflows later.
    const during: string[] = [];
    const sendDuring = (id: string) =>
      platform.call("POST", "/messages", { key: apiKey, headers: { "Idempotency-Key": `during-${id}` }, body: { subscription_id: id, title: "while Temporal is down" } });
    for (const id of subscriptionIds.slice(0, 3)) {
      const asked = Date.now();
      const sent = await sendDuring(id);
      assert.equal(sent.status, 201, JSON.stringify(sent.body));
      // The API gives up on Temporal after 5 s (the SDK alone would retry for ~20 s per request).
      assert.ok(Date.now() - asked < 15_000, `POST /messages took ${Date.now() - asked} ms while Temporal was down`);
      during.push(sent.body.data.message_id);
    }
    // A client retrying its request (same Idempotency-Key) during the outage gets the same answer.
    const replayed = await sendDuring(subscriptionIds[0]!);
    assert.equal(replayed.status, 201, JSON.stringify(replayed.body));
    assert.equal(replayed.body.data.message_id, during[0]);
    // Campaigns too: created and cancelled in PostgreSQL, answered within the API's deadline.
    const timed = async (route: string, body?: unknown) => {
      const asked = Date.now();
      const answer = await platform.call("POST", route, { key: apiKey, body });
      assert.ok(Date.now() - asked < 15_000, `POST ${route} took ${Date.now() - asked} ms while Temporal was down`);
      return answer;
    };
    const later = new Date(Date.now() + 3_600_000).toISOString();
    const campaign = await timed("/campaigns", { name: "during the outage", title: "later", targeting_criteria: { tags: { nobody: "has-this" } }, scheduled_at: later });
    assert.equal(campaign.status, 201, JSON.stringify(campaign.body));
    const cancelled = await timed(`/campaigns/${campaign.body.data.campaign_id}/cancel`);
    assert.equal(cancelled.status, 200, JSON.stringify(cancelled.body));
    assert.equal(cancelled.body.data.status, "cancelled");
    // A GDPR erasure is recorded and answered 503 within the deadline too (it waited out the SDK's ~20 s).
    const erased = `erased-${crypto.randomUUID()}`;
    const registered = await platform.call("POST", "/subscriptions", { key: apiKey, body: { type: "iOSPush", token: `ok-${crypto.randomBytes(16).toString("hex")}`, user_id: erased } });
    assert.ok([200, 201].includes(registered.status), JSON.stringify(registered.body));
    const asked = Date.now();
    const erasure = await platform.call("DELETE", `/users/${erased}`, { key: apiKey });
    assert.ok(Date.now() - asked < 15_000, `DELETE /users took ${Date.now() - asked} ms while Temporal was down`);
    assert.deepEqual([erasure.status, erasure.body.error?.code], [503, "service_unavailable"], JSON.stringify(erasure.body));
    assert.equal(erasure.body.error.details.status, "pending", "the request is recorded, for a retry or the reconciler");

    await temporal.start();
    const { restartOrphanedMessages } = createReconcilerActivities(platform.deps);
    // What the reconciler schedule does every minute in a deployment, run here on each poll.
    await eventually(async () => {
      // This application's only: the database is shared with test files running beside this one.
      await restartOrphanedMessages({ olderThanMs: 0, limit: 100, applicationId });
      return (await platform.deps.db("messages").whereIn("id", during).whereNot("status", "pending")).length === during.length;
    }, 60_000, 1_000);
    await assertAllSentOnce(platform.deps, applicationId, [...messageIds, ...during]);
  }),
);

// Campaigns: the same restarts while a campaign's batches are mid-send. Recipients are seeded
// straight into PostgreSQL (registering them one by one through the API is not what is tested).
const CAMPAIGN_RECIPIENTS = 1_500;

interface StartedCampaign {
  applicationId: string;
  apiKey: string;
  campaignId: string;
  tokens: string[];
}

/** A new application with CAMPAIGN_RECIPIENTS `slow-` subscriptions (half iOS), and an immediate campaign to them. */
async function startSlowCampaign(platform: Platform): Promise<StartedCampaign> {
  const app = await platform.call("POST", "/admin/applications", {
    admin: true,
    // A daily allowance, so every batch debits the ledger (an application without one is not metered).
    body: { name: `restarts-campaign-${crypto.randomUUID()}`, rate_limit_tier: "enterprise", quota: { daily_quota: 100_000 } },
  });
  assert.equal(app.status, 201, JSON.stringify(app.body));
  const applicationId: string = app.body.data.application_id;
  const apiKey: string = app.body.data.api_key;
  const tokens = Array.from({ length: CAMPAIGN_RECIPIENTS }, () => simulatorToken("slow"));
  await seedPushSubscriptions(platform, applicationId, CAMPAIGN_RECIPIENTS, { token: (i) => tokens[i]!, tags: () => ({ cohort: "restart" }) });
  const campaign = await platform.call("POST", "/campaigns", { key: apiKey, body: { name: "through a restart", title: "restart", body: "still arrives once", targeting_criteria: { tags: { cohort: "restart" } } } });
  assert.equal(campaign.status, 201, JSON.stringify(campaign.body));
  return { applicationId, apiKey, campaignId: campaign.body.data.campaign_id, tokens };
}

/**
 * The campaign completes with one message per recipient, each `successful` with one created and
 * one sent event, every token reached the provider (a resend only for chunks in flight at the
 * restart), the stats say so, and the ledger debited one unit per message and balances.
 */
async function assertCampaignSentOnce(platform: Platform, started: StartedCampaign): Promise<void> {
  const { db } = platform.deps;
  await eventually(async () => ((await db("message_campaigns").where("id", started.campaignId).first("status")) as { status: string }).status === "completed", 120_000, 500);
  const byStatus = (await db("messages").where("campaign_id", started.campaignId).groupBy("status").select("status", db.raw("count(*)::int as n, count(distinct subscription_id)::int as recipients"))) as Array<{ status: string; n: number; recipients: number }>;
  assert.deepEqual(byStatus, [{ status: "successful", n: CAMPAIGN_RECIPIENTS, recipients: CAMPAIGN_RECIPIENTS }], "one successful message per recipient");
  const events = (await db("message_events as e")
    .join("messages as m", "m.id", "e.message_id")
    .where("m.campaign_id", started.campaignId)
    .whereIn("e.event_type", ["created", "sent"])
    .groupBy("e.event_type")
    .orderBy("e.event_type")
    .select("e.event_type", db.raw("count(*)::int as n, count(distinct e.message_id)::int as messages"))) as Array<{ event_type: string; n: number; messages: number }>;
  assert.deepEqual(
    events.map((e) => [e.event_type, e.n, e.messages]),
    [
      ["created", CAMPAIGN_RECIPIENTS, CAMPAIGN_RECIPIENTS],
      ["sent", CAMPAIGN_RECIPIENTS, CAMPAIGN_RECIPIENTS],
    ],
    "one created and one sent event per message",
  );
  // The provider side is at-least-once: a chunk in flight at the restart (sent, not yet committed)
  // is sent again, so at most the window's chunks, each token at most twice.
  const requests = started.tokens.map((token) => platform.simulator.simulator.requestsFor(token));
  assert.equal(requests.filter((n) => n === 0).length, 0, "every token reached the provider");
  const resent = requests.filter((n) => n > 1).length;
  assert.ok(resent <= (CAMPAIGN_RECIPIENTS / 500) * 100, `${resent} tokens were sent more than once`);
  assert.ok(Math.max(...requests) <= 2, `a token was sent ${Math.max(...requests)} times`);
  const stats = await platform.call("GET", `/campaigns/${started.campaignId}/stats`, { key: started.apiKey });
  assert.equal(stats.status, 200, JSON.stringify(stats.body));
  assert.equal(stats.body.data.successful_count, CAMPAIGN_RECIPIENTS);
  assert.equal(stats.body.data.remaining, 0);
  const debits = (await db("ledger_transfers")
    .where("application_id", started.applicationId)
    .where("idempotency_key", "like", `debit:daily:batch:${started.applicationId}:${started.campaignId}.b%`)
    .select("amount")) as Array<{ amount: string | number }>;
  assert.equal(debits.length, CAMPAIGN_RECIPIENTS / 500, "one daily debit per batch");
  assert.equal(debits.reduce((sum, d) => sum + Number(d.amount), 0), CAMPAIGN_RECIPIENTS, "debited units = messages");
  assert.deepEqual(await db("ledger_transfers").where("application_id", started.applicationId).where("idempotency_key", "like", "refund:%").select("idempotency_key"), [], "nothing refunded");
  assert.deepEqual(await ledgerBalanceMismatches(db, started.applicationId), [], "every account balance matches its journal");
}

test("PostgreSQL restarted while a campaign's batches are mid-send: the campaign completes, one message per recipient recorded sent once, ledger balanced", { timeout: 300_000 }, () =>
  withOwnServer("postgres", async (platform, postgres) => {
    const started = await startSlowCampaign(platform);
    // Down while the first chunks wait on the provider (their rows locked in open transactions).
    await eventually(async () => platform.simulator.simulator.totalRequests() >= 100, 60_000, 20);
    await postgres.stop();
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    await postgres.start();
    await assertCampaignSentOnce(platform, started);
  }),
);

test("Temporal restarted while a campaign's batches are mid-send: the campaign completes, one message per recipient recorded sent once", { timeout: 300_000 }, () =>
  withOwnServer("temporal", async (platform, temporal) => {
    const started = await startSlowCampaign(platform);
    await eventually(async () => platform.simulator.simulator.totalRequests() >= 100, 60_000, 20);
    await temporal.stop();
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    await temporal.start();
    await assertCampaignSentOnce(platform, started);
  }),
);
