import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { Worker } from "@temporalio/worker";
import { historyFromJSON, historyToJSON } from "@temporalio/common/lib/proto-utils";
import { startTestApp, eventually, type TestApp } from "./support/harness";
import { createPushSubscription, simulatorToken } from "./support/fixtures";
import { messageWorkflowId } from "../workflows/message";

const FIXTURE = path.join(__dirname, "fixtures", "message-workflow-history.json");
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
