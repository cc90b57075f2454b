import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { Worker } from "@temporalio/worker";
import { historyFromJSON, historyToJSON } from "@temporalio/common/lib/proto-utils";
import { startTestApp, eventually, type TestApp } from "./support/harness";
import { createPushSubscription, simulatorToken } from "./support/fixtures";
import { messageWorkflowId } from "../workflows/message";
import { campaignWorkflowId } from "../workflows/campaign";
import { campaignBatchWorkflowId } from "../workflows/campaign-batch";
import { seedPushSubscriptions } from "./support/fixtures";

const FIXTURE = path.join(__dirname, "fixtures", "message-workflow-history.json");
/** A campaign under an application ceiling (pages paced by the ceiling) and its first batch. */
const CAMPAIGN_FIXTURES = { campaign: path.join(__dirname, "fixtures", "campaign-workflow-history.json"), batch: path.join(__dirname, "fixtures", "campaign-batch-workflow-history.json") };
const workflowsPath = require.resolve("../workflows");
let app: TestApp;

before(async () => {
  app = await startTestApp({ worker: true, env: { AUTOMATA_RECEIPT_TIMEOUT: "30s", AUTOMATA_CONVERSION_WINDOW: "30s", AUTOMATA_RETRY_SCALE: "0.0001" } });
});
after(async () => {
  await app.close();
});

test("the message workflow replays deterministically from a history recorded now (retry, receipt, conversion)", { timeout: 120_000 }, async () => {
  const { apiKey } = await app.createApplication({ quota: { daily_quota: 10 } });
  const sub = await createPushSubscription(app, apiKey, { token: simulatorToken("flaky") });
  const id = (await app.request("POST", "/messages", { key: apiKey, body: { subscription_id: sub.id, body: "replay me" } })).body.data.message_id;
  await eventually(async () => (await app.deps.db("messages").where("id", id).first()).status === "successful", 30_000);
  await app.request("POST", `/messages/${id}/status`, { key: apiKey, body: { status: "received" } });
  await app.request("POST", `/messages/${id}/convert`, { key: apiKey, body: { action: "opened" } });
  const handle = app.deps.temporal.workflow.getHandle(messageWorkflowId(id));
  assert.equal(await handle.result(), "converted");
  const history = await handle.fetchHistory();
  await Worker.runReplayHistory({ workflowsPath }, history, messageWorkflowId(id));
  if (process.env.AUTOMATA_RECORD_FIXTURES === "1") fs.writeFileSync(FIXTURE, historyToJSON(history));
});

test("the committed history of an earlier version still replays (a change that breaks running workflows fails here)", { timeout: 60_000 }, async () => {
  const history = historyFromJSON(JSON.parse(fs.readFileSync(FIXTURE, "utf8")));
  await Worker.runReplayHistory({ workflowsPath }, history, "message-fixture");
});

test("the campaign workflow and a batch replay deterministically from histories recorded now (under an application ceiling)", { timeout: 120_000 }, async () => {
  const created = await app.request("POST", "/admin/applications", { admin: true, body: { name: "replay campaign", rate_limit_tier: "enterprise", campaign_max_per_minute: 600 } });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  await seedPushSubscriptions(app, created.body.data.application_id, 150);
  const res = await app.request("POST", "/campaigns", { key: created.body.data.api_key, body: { name: "replay", title: "t", body: "b" } });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  const id = res.body.data.campaign_id as string;
  const campaign = app.deps.temporal.workflow.getHandle(campaignWorkflowId(id));
  await campaign.result();
  const histories = { campaign: await campaign.fetchHistory(), batch: await app.deps.temporal.workflow.getHandle(campaignBatchWorkflowId(id, 0)).fetchHistory() };
  await Worker.runReplayHistory({ workflowsPath }, histories.campaign, campaignWorkflowId(id));
  await Worker.runReplayHistory({ workflowsPath }, histories.batch, campaignBatchWorkflowId(id, 0));
  if (process.env.AUTOMATA_RECORD_FIXTURES === "1") {
    fs.writeFileSync(CAMPAIGN_FIXTURES.campaign, historyToJSON(histories.campaign));
    fs.writeFileSync(CAMPAIGN_FIXTURES.batch, historyToJSON(histories.batch));
  }
});

test("committed campaign and batch histories of an earlier version still replay", { timeout: 60_000 }, async () => {
  for (const [kind, file] of Object.entries(CAMPAIGN_FIXTURES)) {
    await Worker.runReplayHistory({ workflowsPath }, historyFromJSON(JSON.parse(fs.readFileSync(file, "utf8"))), `campaign-fixture-${kind}`);
  }
});
