import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startTestApp, eventually, type TestApp } from "../../test/support/harness";
import { createPushSubscription } from "../../test/support/fixtures";
import { newId } from "../db/ids";
import { quotaStatus } from "../quota/quota";

let app: TestApp;

before(async () => {
  // Default receipt window (72 h): a delivered test message stays `successful` while we look at it.
  app = await startTestApp({ worker: true, env: { AUTOMATA_RETRY_SCALE: "0.0001" } });
});
after(async () => {
  await app.close();
});

function createApp(body: Record<string, unknown> = {}) {
  return app.createApplication({ rate_limit_tier: "enterprise", ...body });
}

const IN_AN_HOUR = () => new Date(Date.now() + 3_600_000).toISOString();

/** A campaign scheduled an hour from now (so it sends nothing of its own during the test). */
async function scheduledCampaign(key: string, body: Record<string, unknown> = {}): Promise<string> {
  const res = await app.request("POST", "/campaigns", { key, body: { name: `c-${newId()}`, title: "Hello", body: "Campaign", scheduled_at: IN_AN_HOUR(), ...body } });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  assert.equal(res.body.data.status, "scheduled");
  return res.body.data.campaign_id;
}

function testSend(key: string, campaignId: string, body: unknown) {
  return app.request("POST", `/campaigns/${campaignId}/test-send`, { key, body });
}

async function messageOf(key: string, id: string) {
  const res = await app.request("GET", `/messages/${id}`, { key });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.data;
}

async function messageCount(applicationId: string): Promise<number> {
  const [row] = await app.deps.db("messages").where("application_id", applicationId).count({ n: "*" });
  return Number(row!.n);
}

describe("campaign test send", () => {
  test("two subscriptions: only they get a delivered is_test message; the campaign, its stats and messages are untouched", async () => {
    const { id: appId, apiKey } = await createApp({ quota: { daily_quota: 100 } });
    const [a, b, other] = [await createPushSubscription(app, apiKey, { type: "iOSPush" }), await createPushSubscription(app, apiKey, { type: "AndroidPush" }), await createPushSubscription(app, apiKey)];
    const campaignId = await scheduledCampaign(apiKey, { data: { promo: "spring" }, badge: 2 });

    const res = await testSend(apiKey, campaignId, { subscription_ids: [a.id, b.id] });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.equal(res.body.status, "success");
    assert.equal(res.body.data.campaign_id, campaignId);
    const messages = res.body.data.messages as Array<{ message_id: string; subscription_id: string; status: string }>;
    assert.equal(messages.length, 2);
    assert.deepEqual(new Set(messages.map((m) => m.subscription_id)), new Set([a.id, b.id]));
    for (const m of messages) assert.equal(m.status, "pending");

    for (const m of messages) {
      const delivered = await eventually(async () => {
        const view = await messageOf(apiKey, m.message_id);
        return view.status === "successful" ? view : undefined;
      }, 30_000, 250);
      assert.equal(delivered.is_test, true);
      assert.equal(delivered.campaign_id, null);
      assert.equal(delivered.title, "Hello");
      assert.equal(delivered.body, "Campaign");
      assert.deepEqual(delivered.data, { promo: "spring" });
      assert.equal(delivered.options.badge, 2);
      assert.deepEqual(delivered.events[0].data, { source: "campaign_test", campaign_id: campaignId });
    }
    assert.equal(await app.deps.db("messages").where("subscription_id", other.id).first(), undefined, "the third subscription got nothing");

    // Lists show the flag too.
    const listed = await app.request("GET", `/messages?subscription_id=${a.id}`, { key: apiKey });
    assert.equal(listed.body.data.messages[0].is_test, true);

    // The campaign does not see them: still scheduled, no stats, no messages.
    const campaign = await app.request("GET", `/campaigns/${campaignId}`, { key: apiKey });
    assert.equal(campaign.body.data.status, "scheduled");
    assert.equal(campaign.body.data.total_recipients, 0);
    const stats = await app.request("GET", `/campaigns/${campaignId}/stats`, { key: apiKey });
    assert.equal(stats.body.data.total_recipients, 0);
    assert.equal(stats.body.data.successful_count, 0);
    const campaignMessages = await app.request("GET", `/campaigns/${campaignId}/messages`, { key: apiKey });
    assert.equal(campaignMessages.body.data.messages.length, 0);

    // Debited like any send.
    await eventually(async () => (await quotaStatus(app.deps.db, appId)).daily!.used === 2, 15_000, 200);

    // Any status: a cancelled campaign can still be test-sent (the same subscription again is a new message).
    assert.equal((await app.request("POST", `/campaigns/${campaignId}/cancel`, { key: apiKey })).status, 200);
    const again = await testSend(apiKey, campaignId, { subscription_ids: [a.id] });
    assert.equal(again.status, 201, JSON.stringify(again.body));
    assert.equal(again.body.data.messages.length, 1);
    assert.equal(again.body.data.messages[0].subscription_id, a.id);
  });

  test("a test send retried with its Idempotency-Key answers the first messages and sends nothing twice; the key with another request is 409", async () => {
    const { id: appId, apiKey } = await createApp({ quota: { daily_quota: 100 } });
    const a = await createPushSubscription(app, apiKey);
    const campaignId = await scheduledCampaign(apiKey);
    const send = (body: unknown) => app.request("POST", `/campaigns/${campaignId}/test-send`, { key: apiKey, body, headers: { "Idempotency-Key": "qa-run-7" } });
    const first = await send({ subscription_ids: [a.id] });
    assert.equal(first.status, 201, JSON.stringify(first.body));
    const retried = await send({ subscription_ids: [a.id] });
    assert.equal(retried.status, 201, JSON.stringify(retried.body));
    assert.deepEqual(retried.body.data.messages.map((m: { message_id: string }) => m.message_id), first.body.data.messages.map((m: { message_id: string }) => m.message_id));
    assert.equal(await messageCount(appId), 1, "one message, so one send and one debit");
    await eventually(async () => (await messageOf(apiKey, first.body.data.messages[0].message_id)).status === "successful", 15_000, 100);
    assert.equal((await quotaStatus(app.deps.db, appId)).daily!.used, 1);
    const reused = await send({ subscription_ids: [a.id, (await createPushSubscription(app, apiKey)).id] });
    assert.deepEqual([reused.status, reused.body.error?.code], [409, "idempotency_key_reused"]);
  });

  test("external_ids: every subscribed push device of each user", async () => {
    const { apiKey } = await createApp();
    const user = `u-${newId()}`;
    const ios = await createPushSubscription(app, apiKey, { type: "iOSPush", externalId: user });
    const android = await createPushSubscription(app, apiKey, { type: "AndroidPush", externalId: user });
    const disabled = await createPushSubscription(app, apiKey, { externalId: user });
    assert.equal((await app.request("POST", `/subscriptions/${disabled.id}/disable`, { key: apiKey })).status, 200);
    const campaignId = await scheduledCampaign(apiKey);

    const res = await testSend(apiKey, campaignId, { external_ids: [user] });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const messages = res.body.data.messages as Array<{ message_id: string; subscription_id: string }>;
    assert.deepEqual(new Set(messages.map((m) => m.subscription_id)), new Set([ios.id, android.id]));
    for (const m of messages) assert.equal((await messageOf(apiKey, m.message_id)).is_test, true);

    const unknown = await testSend(apiKey, campaignId, { external_ids: [user, `nobody-${newId()}`] });
    assert.equal(unknown.status, 404, JSON.stringify(unknown.body));
    assert.equal(unknown.body.error.code, "resource_not_found");
  });

  test("a personalized template is rendered per recipient; a recipient it cannot be rendered for refuses the whole test", async () => {
    const { id: appId, apiKey } = await createApp();
    const template = await app.request("POST", "/templates", {
      key: apiKey,
      body: {
        name: `t-${newId()}`,
        title_template: "Hi {{tags.first_name}}",
        body_template: "{{promo}} for {{user.external_id}}",
        variables: [
          { name: "tags.first_name", required: true },
          { name: "promo", required: true },
        ],
      },
    });
    assert.equal(template.status, 201, JSON.stringify(template.body));
    const mina = await createPushSubscription(app, apiKey, { externalId: "mina", tags: { first_name: "Mina" } });
    const joon = await createPushSubscription(app, apiKey, { type: "AndroidPush", externalId: "joon", tags: { first_name: "Joon" } });
    const nameless = await createPushSubscription(app, apiKey, { tags: { level: "gold" } });
    const campaignId = await scheduledCampaign(apiKey, { title: undefined, body: undefined, template_id: template.body.data.template_id, variables: { promo: "10% off" } });

    const res = await testSend(apiKey, campaignId, { subscription_ids: [mina.id, joon.id] });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const bySubscription = new Map((res.body.data.messages as Array<{ message_id: string; subscription_id: string }>).map((m) => [m.subscription_id, m.message_id]));
    const forMina = await messageOf(apiKey, bySubscription.get(mina.id)!);
    const forJoon = await messageOf(apiKey, bySubscription.get(joon.id)!);
    assert.deepEqual([forMina.title, forMina.body], ["Hi Mina", "10% off for mina"]);
    assert.deepEqual([forJoon.title, forJoon.body], ["Hi Joon", "10% off for joon"]);
    assert.equal(forMina.template_id, template.body.data.template_id);
    assert.equal(forMina.template_version, 1);

    const before = await messageCount(appId);
    const refused = await testSend(apiKey, campaignId, { subscription_ids: [mina.id, nameless.id] });
    assert.equal(refused.body.error?.code, "missing_required_variable", JSON.stringify(refused.body));
    assert.equal(refused.body.error.details.subscription_id, nameless.id);
    assert.equal(await messageCount(appId), before, "nothing was written, not even Mina's message");
  });

  test("validation, tenancy, unknown and unsubscribed recipients", async () => {
    const { id: appId, apiKey } = await createApp();
    const sub = await createPushSubscription(app, apiKey);
    const campaignId = await scheduledCampaign(apiKey);

    const bad: unknown[] = [
      {},
      { subscription_ids: [sub.id], external_ids: ["u-1"] },
      { subscription_ids: [] },
      { subscription_ids: ["not-a-uuid"] },
      { subscription_ids: Array.from({ length: 51 }, () => newId()) },
      { external_ids: [""] },
      { subscription_ids: [sub.id], title: "extra" },
    ];
    for (const body of bad) {
      const res = await testSend(apiKey, campaignId, body);
      assert.equal(res.status, 422, JSON.stringify(body));
      assert.equal(res.body.error.code, "validation_error");
    }

    // Another tenant's campaign (and a campaign that does not exist) is not found.
    const other = await createApp();
    const theirs = await scheduledCampaign(other.apiKey);
    for (const id of [theirs, newId()]) {
      const res = await testSend(apiKey, id, { subscription_ids: [sub.id] });
      assert.equal(res.status, 404);
      assert.equal(res.body.error.code, "campaign_not_found");
    }
    // Nor can another tenant's subscription be named.
    const foreign = await createPushSubscription(app, other.apiKey);
    const foreignSend = await testSend(apiKey, campaignId, { subscription_ids: [foreign.id] });
    assert.equal(foreignSend.status, 404);

    const unknownId = newId();
    const unknown = await testSend(apiKey, campaignId, { subscription_ids: [sub.id, unknownId] });
    assert.equal(unknown.status, 404, JSON.stringify(unknown.body));
    assert.equal(unknown.body.error.code, "resource_not_found");
    assert.equal(unknown.body.error.details.id, unknownId);

    const off = await createPushSubscription(app, apiKey);
    assert.equal((await app.request("POST", `/subscriptions/${off.id}/disable`, { key: apiKey })).status, 200);
    const refused = await testSend(apiKey, campaignId, { subscription_ids: [sub.id, off.id] });
    assert.equal(refused.status, 400, JSON.stringify(refused.body));
    assert.equal(refused.body.error.code, "subscription_disabled");

    assert.equal(await messageCount(appId), 0, "no refused test send wrote a message");
  });
});
