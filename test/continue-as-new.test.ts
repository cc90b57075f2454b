import { test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createLogger } from "../src/logger";
import { freePort } from "../src/infra/ports";
import { installTemporalRuntimeLogger } from "../src/infra/process";
import { startTemporalDevServer } from "../temporal/launcher";
import { campaignWorkflowId } from "../workflows/campaign";
import { eventually } from "./support/harness";
import { seedPushSubscriptions } from "./support/fixtures";
import { startPlatform } from "./support/platform";

// A campaign's workflow continues as new when Temporal suggests it, so a huge audience never runs
// into the history limits (which would terminate the campaign mid-send). In production the
// suggestion comes at thousands of events; a Temporal of this test's own suggests it after 40, so a
// campaign created through the API, with no test-only input, has to take that path.
const logger = createLogger("fatal", "continue-as-new-test");
installTemporalRuntimeLogger(logger);

test("a campaign created through the API continues as new when Temporal suggests it, and still reaches every recipient once", { timeout: 240_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "automata-can-temporal-"));
  const temporal = await startTemporalDevServer({
    port: await freePort(),
    uiPort: 0,
    namespace: "default",
    dbFile: path.join(dir, "temporal.db"),
    headless: true,
    logger,
    dynamicConfig: { "limit.historyCount.suggestContinueAsNew": 40 },
  });
  // Two batches at a time, so the audience is still being paged when the suggestion comes.
  const platform = await startPlatform(logger, process.env.DATABASE_URL!, temporal.address, { AUTOMATA_CAMPAIGN_WINDOW: "2" });
  try {
    const created = await platform.call("POST", "/admin/applications", { admin: true, body: { name: `can-${crypto.randomUUID()}`, rate_limit_tier: "enterprise" } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const { application_id: applicationId, api_key: apiKey } = created.body.data as { application_id: string; api_key: string };
    // Eight batches of 500: each page and batch adds events to the campaign workflow's history.
    const recipients = 4_000;
    await seedPushSubscriptions(platform, applicationId, recipients, { tags: () => ({ cohort: "can" }) });
    const campaign = await platform.call("POST", "/campaigns", { key: apiKey, body: { name: "long history", title: "t", body: "b", targeting_criteria: { tags: { cohort: "can" } } } });
    assert.equal(campaign.status, 201, JSON.stringify(campaign.body));
    const id: string = campaign.body.data.campaign_id;
    await eventually(async () => ((await platform.deps.db("message_campaigns").where("id", id).first("status")).status === "completed" ? true : undefined), 180_000, 500);
    const runs = await platform.deps.temporal.workflow.count(`WorkflowId = "${campaignWorkflowId(id)}"`);
    assert.ok(runs.count > 1, `the campaign workflow ran as ${runs.count} execution(s)`);
    const [counts] = (await platform.deps.db("messages").where("campaign_id", id).select(platform.deps.db.raw("count(*)::int AS total, count(DISTINCT subscription_id)::int AS recipients, count(*) FILTER (WHERE status = 'successful')::int AS successful"))) as Array<{ total: number; recipients: number; successful: number }>;
    assert.deepEqual(counts, { total: recipients, recipients, successful: recipients });
  } finally {
    await platform.stop();
    await temporal.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
