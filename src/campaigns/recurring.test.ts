import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { ScheduleNotFoundError } from "@temporalio/client";
import { startTestApp, eventually, type TestApp } from "../../test/support/harness";
import { seedPushSubscriptions } from "../../test/support/fixtures";
import { insertRunningCampaign, startRunBeforeItsWrapper } from "../../test/support/campaigns";
import { newId } from "../db/ids";
import { campaignWorkflowId, cancelSignal, pauseSignal, progressQuery } from "../../workflows/campaign";
import { createReconcilerActivities } from "../../activities/reconciler";
import { createCampaignRunActivities } from "../../activities/campaign-runs";
import { createCampaignActivities } from "../../activities/campaigns";
import { changeActiveRuns, changeStatusIdempotently } from "./routes";
import { campaignCounts, campaignCountsBySubscriptionType, campaignCountsOf, sumCounts } from "./repository";
import { campaignFiresSkippedTotal } from "../metrics/registry";
import { assertCronStepsWithinRange, CAMPAIGN_CATCHUP_WINDOW_MS, openScheduleRun, campaignRunWorkflowIdPrefix, campaignScheduleId, InvalidCronError, repeatedWallTimeIsDuplicate, shortestCronIntervalSeconds, temporalCronExpression } from "./schedules";

// Retries shrunk; the receipt window stays long so every run's messages stay `successful` (stable stats).
// EVERY_3S fires every three seconds: allowed here so a run comes within the test's time.
const TIMING = { AUTOMATA_RETRY_SCALE: "0.0001", AUTOMATA_MIN_SCHEDULE_INTERVAL: "1s" };
/** Every 3 seconds: a seconds-level spec (6 fields, leading seconds). */
const EVERY_3S = "*/3 * * * * *";
/** A cron that will not fire during the test. */
const NEVER_SOON = "0 9 1 1 *";

let app: TestApp;
const created: string[] = [];

before(async () => {
  app = await startTestApp({ worker: true, env: TIMING });
});
after(async () => {
  // Schedules outlive the test app on the shared Temporal server: leave none firing.
  for (const id of created) {
    await app.deps.temporal.schedule
      .getHandle(campaignScheduleId(id))
      .delete()
      .catch((error: unknown) => {
        if (!(error instanceof ScheduleNotFoundError)) throw error;
      });
  }
  await app.close();
});

async function createRecurring(key: string, schedule: Record<string, unknown>, headers: Record<string, string> = {}, extra: Record<string, unknown> = {}) {
  const res = await app.request("POST", "/campaigns", { key, body: { name: `r-${newId()}`, title: "Daily", body: "Your digest", schedule, ...extra }, headers });
  if (res.status === 201) created.push(res.body.data.campaign_id);
  return res;
}

async function get(key: string, path: string) {
  const res = await app.request("GET", path, { key });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.data;
}

/** automata_campaign_fires_skipped_total for one reason, in this process. */
async function firesSkipped(reason: string): Promise<number> {
  return (await campaignFiresSkippedTotal.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

function describeSchedule(id: string) {
  return app.deps.temporal.schedule.getHandle(campaignScheduleId(id)).describe();
}

describe("cron expressions", () => {
  test("5 fields pass as they are; a leading seconds field becomes Temporal's 7-field form; macros expand", () => {
    assert.equal(temporalCronExpression("0 9 * * MON"), "0 9 * * MON");
    assert.equal(temporalCronExpression("*/3 * * * * *"), "*/3 * * * * * *");
    assert.equal(temporalCronExpression(" 0  0 1-15/2 jan,jul sun-sat "), "0 0 1-15/2 jan,jul sun-sat");
    assert.equal(temporalCronExpression("@daily"), "0 0 * * *");
    for (const bad of ["* * * *", "61 * * * *", "* 24 * * *", "0 0 0 * *", "0 0 * 13 *", "0 0 * * 8", "*/0 * * * *", "0 0 ? * *", "0 0 L * *", "5-2 * * * *", "0 9 * * SAT-SUN", "0 9 1 DEC-JAN *", "0 0 1 1 * 2030 x", "@every 5s", "CRON_TZ=UTC 0 9 * * *", "0 9 * * MO#2"]) {
      assert.throws(() => temporalCronExpression(bad), InvalidCronError, bad);
    }
    // A step past its field's range is refused on requests (Temporal keeps a step's low 32 bits),
    // while a stored one an earlier release accepted still converts: its campaign keeps running.
    for (const oversized of ["0 */4294967296 * * *", "*/4294967296 * * * * *", "*/61 * * * *", "0 0 */32 * *"]) {
      assert.throws(() => assertCronStepsWithinRange(oversized), InvalidCronError, oversized);
    }
    assert.equal(temporalCronExpression("*/90 * * * *"), "*/90 * * * *");
    for (const fine of ["*/30 * * * * *", "0 0 1 */12 *", "1-59/2 * * * *", "0 */24 * * *", "0 9 * * *"]) assertCronStepsWithinRange(fine);
  });
});

test("shortestCronIntervalSeconds: the finest field matching more than one value sets the bound", () => {
  const cases: Array<[cron: string, seconds: number]> = [
    ["* * * * * *", 1],
    ["*/3 * * * * *", 3],
    ["0,30 * * * * *", 30],
    ["0,50 * * * * *", 10], // 50 → 0 of the next minute
    ["10/20 * * * * *", 20], // 10, 30, 50
    ["0 * * * * *", 60],
    ["* * * * *", 60],
    ["*/15 * * * *", 900],
    ["0,5 9 * * *", 300],
    ["0 9-17 * * MON-FRI", 3_600],
    ["0 0,23 * * *", 3_600], // 23:00 → 00:00
    ["0 9 * * MON", 86_400],
    ["@hourly", 3_600],
    ["@daily", 86_400],
  ];
  for (const [cron, seconds] of cases) assert.equal(shortestCronIntervalSeconds(cron), seconds, cron);
  assert.throws(() => shortestCronIntervalSeconds("61 * * * *"), InvalidCronError);
});

test("repeatedWallTimeIsDuplicate: crons whose fires are at least two hours apart, so a second fire at the same wall time is the fall-back's repeat", () => {
  const cases: Array<[string, boolean]> = [
    ["30 1 * * *", true],
    ["0 9 * * MON", true],
    ["0 9 1 * *", true],
    ["@daily", true],
    ["15 30 9 * * *", true],
    // Twice a day: 01:30 EDT and 01:30 EST on the fall-back night are one local time, not two fires.
    ["30 1,13 * * *", true],
    ["0 */3 * * *", true],
    ["0 9,11 * * *", true],
    ["0 * * * *", false],
    ["@hourly", false],
    ["*/15 9 * * *", false],
    ["0 9,10 * * *", false],
    ["0 9-17 * * *", false],
    ["*/3 * * * * *", false],
  ];
  for (const [cron, expected] of cases) assert.equal(repeatedWallTimeIsDuplicate(cron), expected, cron);
});

describe("recurring campaigns", () => {
  test("a seconds-level schedule fires runs: each is its own campaign with its own stats, one message per subscriber per run; pause, resume, delete", async () => {
    const { id: appId, apiKey } = await app.createApplication({ rate_limit_tier: "enterprise" });
    const subscribers = await seedPushSubscriptions(app, appId, 3);
    const res = await createRecurring(apiKey, { cron: EVERY_3S, timezone: "Asia/Seoul" });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.equal(res.body.data.status, "in_progress");
    const id = res.body.data.campaign_id;

    // The schedule exists with the spec, timezone, overlap policy and action asked for.
    const schedule = await describeSchedule(id);
    assert.equal(schedule.spec.timezone, "Asia/Seoul");
    assert.deepEqual(
      schedule.spec.calendars?.map((c) => c.second),
      [[{ start: 0, end: 59, step: 3 }]],
    );
    assert.equal(schedule.policies.overlap, "SKIP");
    assert.equal(schedule.policies.catchupWindow, CAMPAIGN_CATCHUP_WINDOW_MS);
    assert.equal(schedule.action.type, "startWorkflow");
    assert.equal(schedule.action.workflowType, "campaignRunWorkflow");
    assert.equal(schedule.action.taskQueue, app.config.TEMPORAL_TASK_QUEUE);
    assert.deepEqual(schedule.action.args, [{ campaignId: id }]);
    assert.equal(schedule.state.paused, false);

    const campaign = await get(apiKey, `/campaigns/${id}`);
    assert.deepEqual(campaign.schedule, { cron: EVERY_3S, timezone: "Asia/Seoul" });
    assert.equal(campaign.campaign_type, "recurring");
    assert.equal(campaign.parent_campaign_id, null);
    assert.ok(campaign.next_run_at && new Date(campaign.next_run_at).getTime() - Date.now() <= 3_500, campaign.next_run_at);

    // At least two runs complete, each a campaign of its own with correct stats.
    const runs = await eventually(async () => {
      const page = await get(apiKey, `/campaigns/${id}/runs`);
      const done = page.runs.filter((r: { status: string }) => r.status === "completed");
      return done.length >= 2 ? page.runs : undefined;
    }, 45_000, 500);
    const completed = runs.filter((r: { status: string }) => r.status === "completed");
    for (const run of completed) {
      assert.deepEqual(run.stats, { total: 3, successful: 3, failed: 0, received: 0, converted: 0, cancelled: 0, pending: 0 }, JSON.stringify(run));
      assert.ok(run.started_at && run.completed_at && run.created_at);
      const messages = (await app.deps.db("messages").where("campaign_id", run.id).select("subscription_id")) as Array<{ subscription_id: string }>;
      assert.equal(messages.length, 3);
      assert.deepEqual(new Set(messages.map((m) => m.subscription_id)), new Set(subscribers), "each subscriber got exactly one message in this run");
      const row = await get(apiKey, `/campaigns/${run.id}`);
      assert.equal(row.parent_campaign_id, id);
      assert.equal(row.campaign_type, "immediate");
      assert.equal(row.title, "Daily");
      // Each run is its own campaign workflow, a child of the schedule's run workflow.
      // (The run's row turns completed in the workflow's last activity, just before the workflow ends.)
      const wf = await eventually(async () => {
        const described = await app.deps.temporal.workflow.getHandle(campaignWorkflowId(run.id)).describe();
        return described.status.name === "COMPLETED" ? described : undefined;
      }, 10_000, 100);
      assert.match(wf.parentExecution?.workflowId ?? "", new RegExp(`^campaign-${id}-run-`));
    }
    assert.equal(new Set(runs.map((r: { id: string }) => r.id)).size, runs.length);
    // The list shows the recurring campaign, not its runs.
    const listed = await get(apiKey, "/campaigns?per_page=100");
    assert.deepEqual(
      listed.campaigns.map((c: { id: string }) => c.id),
      [id],
    );

    // Pause: the schedule is paused, and a run caught mid-way pauses with it (or has just
    // finished); no new run starts over two further fire times.
    const paused = await app.request("POST", `/campaigns/${id}/pause`, { key: apiKey });
    assert.equal(paused.status, 200, JSON.stringify(paused.body));
    assert.equal(paused.body.data.status, "paused");
    const whilePaused = await eventually(async () => {
      const d = await describeSchedule(id);
      const runs = (await get(apiKey, `/campaigns/${id}/runs`)).runs as Array<{ status: string }>;
      return d.state.paused && runs.every((r) => r.status !== "in_progress") ? d : undefined;
    }, 60_000, 250);
    const runsAtPause = await app.deps.db("message_campaigns").where("parent_campaign_id", id).count<{ count: string }[]>({ count: "*" });
    await new Promise((r) => setTimeout(r, 2 * 3_000 + 1_000));
    const afterPause = await describeSchedule(id);
    assert.equal(afterPause.state.paused, true);
    assert.equal(afterPause.info.numActionsTaken, whilePaused.info.numActionsTaken, "no fire was taken while paused");
    assert.equal(afterPause.info.recentActions.length, whilePaused.info.recentActions.length);
    const runsLater = await app.deps.db("message_campaigns").where("parent_campaign_id", id).count<{ count: string }[]>({ count: "*" });
    assert.equal(runsLater[0]!.count, runsAtPause[0]!.count, "no run row while paused");
    assert.equal((await get(apiKey, `/campaigns/${id}`)).next_run_at, null);

    // Resume: fires again.
    const resumed = await app.request("POST", `/campaigns/${id}/resume`, { key: apiKey });
    assert.equal(resumed.status, 200, JSON.stringify(resumed.body));
    assert.equal(resumed.body.data.status, "in_progress");
    assert.equal((await describeSchedule(id)).state.paused, false);
    await eventually(async () => (await describeSchedule(id)).info.numActionsTaken > afterPause.info.numActionsTaken, 20_000, 250);
    await eventually(async () => {
      const [n] = await app.deps.db("message_campaigns").where("parent_campaign_id", id).count<{ count: string }[]>({ count: "*" });
      return Number(n!.count) > Number(runsAtPause[0]!.count);
    }, 20_000, 250);

    // DELETE: schedule gone, campaign cancelled, runs kept; repeating it is harmless.
    const deleted = await app.request("DELETE", `/campaigns/${id}`, { key: apiKey });
    assert.equal(deleted.status, 200, JSON.stringify(deleted.body));
    assert.equal(deleted.body.data.status, "cancelled");
    assert.ok(deleted.body.data.cancelled_at);
    await assert.rejects(describeSchedule(id), ScheduleNotFoundError);
    const after = await get(apiKey, `/campaigns/${id}`);
    assert.equal(after.status, "cancelled");
    assert.equal(after.next_run_at, null);
    assert.ok((await get(apiKey, `/campaigns/${id}/runs`)).runs.length >= completed.length + 1);
    const again = await app.request("DELETE", `/campaigns/${id}`, { key: apiKey });
    assert.equal(again.status, 200);
    assert.equal((await app.request("POST", `/campaigns/${id}/resume`, { key: apiKey })).body.error.code, "campaign_already_completed");
  });

  test("a DST fall-back fires the cron twice at the same local time: the second fire makes no run (no double push)", async () => {
    const { id: appId, apiKey } = await app.createApplication();
    await seedPushSubscriptions(app, appId, 1);
    const res = await createRecurring(apiKey, { cron: "30 1 * * *", timezone: "America/New_York" });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const id = res.body.data.campaign_id;
    // The fires Temporal makes around 2027-11-07 (measured on the dev server): 01:30 EDT, 01:30 EST, then the next day.
    const runs = createCampaignRunActivities(app.deps);
    const fire = (at: string) => runs.createCampaignRun({ parentCampaignId: id, runKey: `${campaignRunWorkflowIdPrefix(id)}-${at}` });
    assert.notEqual(await fire("2027-11-07T05:30:00Z"), null, "the first 01:30 makes a run");
    const repeatsBefore = await firesSkipped("repeated_wall_time");
    assert.equal(await fire("2027-11-07T06:30:00Z"), null, "the repeated 01:30 is skipped");
    assert.equal(await firesSkipped("repeated_wall_time"), repeatsBefore + 1, "and counted");
    assert.notEqual(await fire("2027-11-08T06:30:00Z"), null, "the next day's 01:30 makes a run");
    assert.notEqual(await fire("2027-11-07T05:30:00Z"), null, "a retried first fire still answers its run");
    const keys = (await app.deps.db("message_campaigns").where("parent_campaign_id", id).orderBy("run_key").pluck("run_key")) as string[];
    assert.deepEqual(keys.map((k) => k.slice(-20)), ["2027-11-07T05:30:00Z", "2027-11-08T06:30:00Z"]);
    // An hourly cron's fires in the repeated hour are real fires an hour apart: both run.
    const hourly = await createRecurring(apiKey, { cron: "30 * * * *", timezone: "America/New_York" });
    assert.equal(hourly.status, 201, JSON.stringify(hourly.body));
    const hourlyId = hourly.body.data.campaign_id;
    for (const at of ["2027-11-07T05:30:00Z", "2027-11-07T06:30:00Z"]) {
      assert.notEqual(await runs.createCampaignRun({ parentCampaignId: hourlyId, runKey: `${campaignRunWorkflowIdPrefix(hourlyId)}-${at}` }), null, at);
    }
  });

  test("a fire whose run is created more than the catch-up window late (the database was down) makes no run; one inside it does", async () => {
    const { apiKey } = await app.createApplication();
    const res = await createRecurring(apiKey, { cron: NEVER_SOON, timezone: "UTC" });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const id = res.body.data.campaign_id;
    const runs = createCampaignRunActivities(app.deps);
    const fire = (at: Date) => runs.createCampaignRun({ parentCampaignId: id, runKey: `${campaignRunWorkflowIdPrefix(id)}-${at.toISOString().replace(/\.\d{3}Z$/, "Z")}` });
    const minutesAgo = (m: number) => new Date(Math.floor((Date.now() - m * 60_000) / 1000) * 1000);
    const lateBefore = await firesSkipped("late");
    assert.equal(await fire(minutesAgo(11)), null, "11 minutes late: dropped");
    assert.equal(await firesSkipped("late"), lateBefore + 1, "and counted");
    assert.notEqual(await fire(minutesAgo(5)), null, "5 minutes late: still runs");
    assert.equal(((await app.deps.db("message_campaigns").where("parent_campaign_id", id).pluck("run_key")) as string[]).length, 1);
  });

  test("fires of a deactivated application's recurring campaign make no run; reactivated, the next fire does", async () => {
    const { id: appId, apiKey } = await app.createApplication();
    const res = await createRecurring(apiKey, { cron: NEVER_SOON, timezone: "UTC" });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const id = res.body.data.campaign_id;
    const runs = createCampaignRunActivities(app.deps);
    const fire = (at: string) => runs.createCampaignRun({ parentCampaignId: id, runKey: `${campaignRunWorkflowIdPrefix(id)}-${at}` });
    const setActive = (isActive: boolean) => app.request("PATCH", `/admin/applications/${appId}`, { admin: true, body: { is_active: isActive } });
    assert.equal((await setActive(false)).status, 200);
    const pausedBefore = await firesSkipped("paused");
    assert.equal(await fire("2031-01-01T09:00:00Z"), null);
    assert.equal(await firesSkipped("paused"), pausedBefore + 1, "a skipped fire is counted");
    assert.equal((await setActive(true)).status, 200);
    assert.notEqual(await fire("2032-01-01T09:00:00Z"), null);
    const keys = (await app.deps.db("message_campaigns").where("parent_campaign_id", id).pluck("run_key")) as string[];
    assert.deepEqual(keys.map((k) => k.slice(-20)), ["2032-01-01T09:00:00Z"]);
  });

  test("a fire whose run the reconciler already started keeps its wrapper open until that run ends (overlap SKIP still sees it)", async () => {
    const { apiKey } = await app.createApplication();
    const res = await createRecurring(apiKey, { cron: NEVER_SOON, timezone: "UTC" });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const { run, wrapper, resume } = await startRunBeforeItsWrapper(app, res.body.data.campaign_id);
    await new Promise((r) => setTimeout(r, 2_000));
    assert.equal((await wrapper.describe()).status.name, "RUNNING", "the wrapper waits for the run the reconciler started");
    await resume();
    assert.equal(await wrapper.result(), null);
    assert.equal((await run.describe()).status.name, "COMPLETED", "the wrapper ended after the run did");
  });

  test("a run with timezone delivery plans from its fire time: a zone whose local time is the fire time sends now, not tomorrow", async () => {
    const { id: appId, apiKey } = await app.createApplication();
    await seedPushSubscriptions(app, appId, 2, { timezone: (i) => (i === 0 ? "Asia/Seoul" : "Europe/Paris") });
    const res = await createRecurring(apiKey, { cron: NEVER_SOON, timezone: "Asia/Seoul" }, {}, { delivery: { mode: "timezone", local_time: "09:00", fallback_timezone: "UTC" } });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const id = res.body.data.campaign_id;
    // The run of a fire a second ago (its run key carries the fire time), delivering at the fire's Seoul wall time.
    const fireAt = new Date(Math.floor((Date.now() - 1_000) / 1_000) * 1_000);
    const run = await createCampaignRunActivities(app.deps).createCampaignRun({ parentCampaignId: id, runKey: `${campaignRunWorkflowIdPrefix(id)}-${fireAt.toISOString().replace(".000Z", "Z")}` });
    assert.ok(run);
    const localTime = fireAt.toLocaleTimeString("en-GB", { timeZone: "Asia/Seoul", hour12: false });
    await app.deps.db("message_campaigns").where("id", run.campaignId).update({ delivery: JSON.stringify({ mode: "timezone", local_time: localTime, fallback_timezone: "UTC" }) });
    const groups = await createCampaignActivities(app.deps).planDeliveryGroups({ campaignId: run.campaignId, fromMs: fireAt.getTime() + 800 });
    const seoul = groups.find((g) => g.timezones.includes("Asia/Seoul"));
    assert.equal(seoul?.sendAt, fireAt.getTime(), "Seoul at the fire, not 24 h later");
    const paris = groups.find((g) => g.timezones.includes("Europe/Paris"));
    assert.ok([7, 8].includes((paris!.sendAt - fireAt.getTime()) / 3_600_000), "Paris reads that time 7 or 8 hours (by season) after Seoul");
  });

  test("a run with timezone delivery plans only the zones whose local time comes before the schedule's next fire; the later ones are the next run's", async () => {
    const { id: appId, apiKey } = await app.createApplication();
    await seedPushSubscriptions(app, appId, 3, { timezone: (i) => ["Etc/UTC", "Etc/GMT+1", "Etc/GMT-3"][i]! });
    // Daily at a UTC time two hours from now: the schedule's next fire.
    const nextFire = new Date(Math.ceil((Date.now() + 2 * 3_600_000) / 60_000) * 60_000);
    const cron = `${nextFire.getUTCMinutes()} ${nextFire.getUTCHours()} * * *`;
    const res = await createRecurring(apiKey, { cron, timezone: "UTC" }, {}, { delivery: { mode: "timezone", local_time: "09:00", fallback_timezone: "UTC" } });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const id = res.body.data.campaign_id;
    assert.equal((await describeSchedule(id)).info.nextActionTimes[0]?.getTime(), nextFire.getTime());
    const fireAt = new Date(Math.floor((Date.now() - 1_000) / 1_000) * 1_000);
    const run = await createCampaignRunActivities(app.deps).createCampaignRun({ parentCampaignId: id, runKey: `${campaignRunWorkflowIdPrefix(id)}-${fireAt.toISOString().replace(".000Z", "Z")}` });
    assert.ok(run);
    // Local time = the fire's UTC wall time: UTC now, UTC−1 in an hour (before the next fire),
    // UTC+3 three hours ago, so its next is 21 h away, after the next fire.
    const localTime = fireAt.toISOString().slice(11, 19);
    await app.deps.db("message_campaigns").where("id", run.campaignId).update({ delivery: JSON.stringify({ mode: "timezone", local_time: localTime, fallback_timezone: "UTC" }) });
    const groups = await createCampaignActivities(app.deps).planDeliveryGroups({ campaignId: run.campaignId, fromMs: fireAt.getTime() + 800 });
    assert.deepEqual(
      groups.map((g) => [g.timezones, g.sendAt - fireAt.getTime()]),
      [
        [["Etc/UTC"], 0],
        [["Etc/GMT+1"], 3_600_000],
      ],
    );
  });

  test("the reconciler deletes schedules its campaign's end could not: a paused one of a cancelled campaign, one whose campaign row is gone; an active one stays", async () => {
    const { id: appId, apiKey } = await app.createApplication();
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await createRecurring(apiKey, { cron: NEVER_SOON, timezone: "UTC" });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      ids.push(res.body.data.campaign_id);
    }
    const [cancelled, deleted, active] = ids as [string, string, string];
    assert.equal((await app.request("POST", `/campaigns/${cancelled}/pause`, { key: apiKey })).status, 200);
    assert.equal((await describeSchedule(cancelled)).state.paused, true);
    // As if Temporal had been unreachable when these campaigns ended: rows changed, schedules kept.
    await app.deps.db("message_campaigns").where("id", cancelled).update({ status: "cancelled", cancelled_at: new Date() });
    await app.deps.db("message_campaigns").where("id", deleted).delete();
    const { deleteLeftoverCampaignSchedules } = createReconcilerActivities(app.deps);
    // Schedules reach Temporal's list a moment after they are created.
    let removed = 0;
    await eventually(async () => {
      removed += (await deleteLeftoverCampaignSchedules({ limit: 50, applicationId: appId })).deleted;
      return removed === 2;
    }, 15_000, 250);
    await assert.rejects(describeSchedule(cancelled), ScheduleNotFoundError);
    await assert.rejects(describeSchedule(deleted), ScheduleNotFoundError);
    assert.equal((await describeSchedule(active)).state.paused, false, "an active campaign keeps its schedule");
    assert.equal((await deleteLeftoverCampaignSchedules({ limit: 50, applicationId: appId })).deleted, 0);
  });

  test("POST /cancel on a recurring campaign deletes its schedule too", async () => {
    const { apiKey } = await app.createApplication();
    const res = await createRecurring(apiKey, { cron: NEVER_SOON, start_at: "2030-01-01T00:00:00Z" });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const id = res.body.data.campaign_id;
    const d = await describeSchedule(id);
    assert.equal(d.spec.timezone, "UTC");
    assert.equal(d.spec.startAt?.toISOString(), "2030-01-01T00:00:00.000Z");
    assert.equal((await get(apiKey, `/campaigns/${id}`)).next_run_at, "2030-01-01T09:00:00.000Z");
    const cancelled = await app.request("POST", `/campaigns/${id}/cancel`, { key: apiKey });
    assert.equal(cancelled.status, 200, JSON.stringify(cancelled.body));
    assert.equal(cancelled.body.data.status, "cancelled");
    await assert.rejects(describeSchedule(id), ScheduleNotFoundError);
  });

  test("an invalid cron is refused with 422 naming schedule.cron, and nothing is created", async () => {
    const { id: appId, apiKey } = await app.createApplication();
    for (const cron of ["61 * * * *", "* * * *", "0 9 * * FUNDAY", "@every 5s"]) {
      const res = await createRecurring(apiKey, { cron });
      assert.equal(res.status, 422, `${cron}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error.code, "validation_error");
      assert.ok(res.body.error.details.fields["schedule.cron"], JSON.stringify(res.body));
    }
    const bad = await createRecurring(apiKey, { cron: NEVER_SOON, timezone: "Mars/Olympus" });
    assert.equal(bad.status, 422);
    assert.ok(bad.body.error.details.fields["schedule.timezone"]);
    const [n] = await app.deps.db("message_campaigns").where("application_id", appId).count<{ count: string }[]>({ count: "*" });
    assert.equal(Number(n!.count), 0);
  });

  test("another tenant's recurring campaign answers 404 campaign_not_found", async () => {
    const owner = await app.createApplication();
    const other = await app.createApplication();
    const res = await createRecurring(owner.apiKey, { cron: NEVER_SOON });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const id = res.body.data.campaign_id;
    for (const [method, path] of [
      ["GET", `/campaigns/${id}`],
      ["GET", `/campaigns/${id}/runs`],
      ["DELETE", `/campaigns/${id}`],
      ["POST", `/campaigns/${id}/pause`],
    ] as const) {
      const r = await app.request(method, path, { key: other.apiKey });
      assert.equal(r.status, 404, `${method} ${path}`);
      assert.equal(r.body.error.code, "campaign_not_found");
    }
    assert.equal((await describeSchedule(id)).state.paused, false, "the owner's schedule is untouched");
    const unknown = await app.request("GET", `/campaigns/${newId()}/runs`, { key: owner.apiKey });
    assert.equal(unknown.status, 404);
  });

  test("an Idempotency-Key replay answers the same campaign and creates no second schedule, nor revives a deleted one", async () => {
    const { id: appId, apiKey } = await app.createApplication();
    const key = `weekly-${newId()}`;
    const body = { cron: NEVER_SOON, timezone: "Europe/Paris" };
    const name = `r-${newId()}`;
    const first = await createRecurring(apiKey, body, { "Idempotency-Key": key }, { name });
    assert.equal(first.status, 201, JSON.stringify(first.body));
    const id = first.body.data.campaign_id;
    const before = await describeSchedule(id);
    const replay = await createRecurring(apiKey, body, { "Idempotency-Key": key }, { name });
    assert.equal(replay.status, 201, JSON.stringify(replay.body));
    assert.equal(replay.body.data.campaign_id, id);
    const afterReplay = await describeSchedule(id);
    assert.equal(afterReplay.info.createdAt.getTime(), before.info.createdAt.getTime(), "the same schedule, not a new one");
    const [n] = await app.deps.db("message_campaigns").where("application_id", appId).count<{ count: string }[]>({ count: "*" });
    assert.equal(Number(n!.count), 1);

    assert.equal((await app.request("DELETE", `/campaigns/${id}`, { key: apiKey })).status, 200);
    const late = await createRecurring(apiKey, body, { "Idempotency-Key": key }, { name });
    assert.equal(late.body.data.campaign_id, id);
    await assert.rejects(describeSchedule(id), ScheduleNotFoundError, "a replay does not bring back a deleted schedule");
  });

  test("execute fires one run now; the recurring campaign's counts and messages are its runs'; refused while paused or while a run sends", async () => {
    const { id: appId, apiKey } = await app.createApplication({ rate_limit_tier: "enterprise" });
    const subscribers = await seedPushSubscriptions(app, appId, 4);
    const res = await createRecurring(apiKey, { cron: NEVER_SOON, timezone: "UTC" });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const id = res.body.data.campaign_id;

    const executed = await app.request("POST", `/campaigns/${id}/execute`, { key: apiKey });
    assert.equal(executed.status, 200, JSON.stringify(executed.body));
    assert.deepEqual([executed.body.data.status, executed.body.data.run_requested], ["in_progress", true]);
    const run = await eventually(async () => {
      const page = await get(apiKey, `/campaigns/${id}/runs`);
      return page.runs.length === 1 && page.runs[0].status === "completed" ? page.runs[0] : undefined;
    }, 30_000, 250);
    assert.deepEqual(run.stats, { total: 4, successful: 4, failed: 0, received: 0, converted: 0, cancelled: 0, pending: 0 });

    // The recurring campaign itself sums its runs (it sends nothing under its own id).
    const stats = await get(apiKey, `/campaigns/${id}/stats`);
    assert.deepEqual([stats.total_recipients, stats.successful_count, stats.failed_count, stats.delivery_rate], [4, 4, 0, 100]);
    const listed = (await get(apiKey, "/campaigns")).campaigns.find((c: { id: string }) => c.id === id);
    assert.equal(listed.total_recipients, 4);
    const messages = await get(apiKey, `/campaigns/${id}/messages`);
    assert.equal(messages.pagination.total_items, 4);
    assert.deepEqual(new Set(messages.messages.map((m: { subscription_id: string }) => m.subscription_id)), new Set(subscribers));
    assert.ok(messages.messages.every((m: { campaign_id: string }) => m.campaign_id === run.id), "each message names its run");
    // The run's own view is unchanged: just its messages.
    assert.equal((await get(apiKey, `/campaigns/${run.id}/stats`)).total_recipients, 4);

    // A run still sending: a second execute would be skipped by the schedule's overlap policy.
    await app.deps.db("message_campaigns").where("id", run.id).update({ status: "running" });
    const overlapping = await app.request("POST", `/campaigns/${id}/execute`, { key: apiKey });
    assert.equal(overlapping.status, 400, JSON.stringify(overlapping.body));
    assert.deepEqual([overlapping.body.error.code, overlapping.body.error.details.run_id], ["campaign_already_started", run.id]);
    await app.deps.db("message_campaigns").where("id", run.id).update({ status: "completed" });

    assert.equal((await app.request("POST", `/campaigns/${id}/pause`, { key: apiKey })).status, 200);
    const whilePaused = await app.request("POST", `/campaigns/${id}/execute`, { key: apiKey });
    assert.equal(whilePaused.status, 409, JSON.stringify(whilePaused.body));
    assert.equal(whilePaused.body.error.code, "invalid_status_transition");
    assert.equal((await get(apiKey, `/campaigns/${id}/runs`)).runs.length, 1, "no run was fired by the refused requests");
  });

  test("a recurring campaign's counts are its runs' totals through inserts and status changes in several runs, read from ≤ 32 rows however many runs", async () => {
    const { id: appId } = await app.createApplication();
    const parentId = await insertRunningCampaign(app, appId, `r-${newId()}`, {}, { schedule: JSON.stringify({ cron: NEVER_SOON, timezone: "UTC" }) });
    const runIds: string[] = [];
    for (let run = 0; run < 3; run++) runIds.push(await insertRunningCampaign(app, appId, `run-${run}`, {}, { parent_campaign_id: parentId, run_key: `run-${run}` }));
    const db = app.deps.db;
    // Each run's messages in transactions of their own (different shards), both platforms.
    for (const [run, campaignId] of runIds.entries()) {
      await db("messages").insert(
        Array.from({ length: 4 + run }, (_, i) => ({ application_id: appId, campaign_id: campaignId, subscription_type: i % 2 === 0 ? "iOSPush" : "AndroidPush", status: "pending" })),
      );
    }
    // One statement moving messages of two runs at once, then a receipt timeout (successful → failed) in one run.
    await db("messages").whereIn("campaign_id", runIds.slice(0, 2)).update({ status: "successful", sent_at: new Date() });
    const timedOut = (await db("messages").where({ campaign_id: runIds[0], subscription_type: "iOSPush" }).first("id")) as { id: string };
    await db("messages").where("id", timedOut.id).update({ status: "failed" });
    await db("messages").where({ campaign_id: runIds[2], subscription_type: "AndroidPush" }).update({ status: "cancelled" });

    const byRun = await campaignCountsOf(db, runIds);
    const runsTotal = sumCounts(byRun.values());
    assert.deepEqual(
      [runsTotal.total, runsTotal.pending, runsTotal.successful, runsTotal.failed, runsTotal.failed_after_sent, runsTotal.cancelled],
      [15, 3, 8, 1, 1, 3],
      "the runs' own counts",
    );
    assert.deepEqual(await campaignCounts(db, parentId), runsTotal, "the recurring campaign's counts are its runs' totals");
    const perType = await campaignCountsBySubscriptionType(db, parentId);
    assert.deepEqual([perType.get("iOSPush")!.total, perType.get("AndroidPush")!.total], [8, 7]);
    // Kept under the recurring campaign, not summed from the runs at read time.
    const kept = (await db("recurring_campaign_counts").where("campaign_id", parentId).first(db.raw("count(*)::int AS n, sum(successful)::int AS successful"))) as { n: number; successful: number };
    assert.ok(kept.n > 0 && kept.n <= 32, `rows kept for the recurring campaign: ${kept.n}`);
    assert.equal(kept.successful, 8);
    assert.equal(await db("recurring_campaign_counts").whereIn("campaign_id", runIds).first().then((row: unknown) => row), undefined, "no roll-up rows under the runs themselves");
  });

  test("an execute retried with its Idempotency-Key after its run finished answers that run instead of sending the campaign again", async () => {
    const { id: appId, apiKey } = await app.createApplication({ rate_limit_tier: "enterprise" });
    await seedPushSubscriptions(app, appId, 3);
    const res = await createRecurring(apiKey, { cron: NEVER_SOON, timezone: "UTC" });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const id = res.body.data.campaign_id;
    const execute = (key: string) => app.request("POST", `/campaigns/${id}/execute`, { key: apiKey, headers: { "Idempotency-Key": key } });
    const completedRuns = async (count: number) =>
      eventually(async () => {
        const runs = (await get(apiKey, `/campaigns/${id}/runs`)).runs as Array<{ status: string }>;
        return runs.length === count && runs.every((r) => r.status === "completed") && (await openScheduleRun(app.deps, id)) === null ? runs : undefined;
      }, 30_000, 250);

    const first = await execute("fire-1");
    assert.deepEqual([first.status, first.body.data?.run_requested], [200, true], JSON.stringify(first.body));
    await completedRuns(1);
    // The response was lost; the client retries once the run has already gone out.
    const retried = await execute("fire-1");
    assert.deepEqual([retried.status, retried.body.data], [200, first.body.data]);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    assert.equal((await get(apiKey, `/campaigns/${id}/runs`)).runs.length, 1, "no second run");
    assert.equal(await app.deps.db("messages").whereIn("campaign_id", app.deps.db("message_campaigns").where("parent_campaign_id", id).select("id")).count({ n: "*" }).then((r) => Number(r[0]!.n)), 3);
    // Another key is another execute.
    assert.equal((await execute("fire-2")).status, 200);
    await completedRuns(2);
  });

  test("a run whose provider refuses the credentials pauses the recurring campaign too, saying why; its resume is what starts the fires again", async () => {
    const { id: appId, apiKey } = await app.createApplication({ rate_limit_tier: "enterprise" });
    await seedPushSubscriptions(app, appId, 2, { prefix: () => "denied" });
    await seedPushSubscriptions(app, appId, 2);
    const res = await createRecurring(apiKey, { cron: NEVER_SOON, timezone: "UTC" });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const id = res.body.data.campaign_id as string;
    assert.equal((await app.request("POST", `/campaigns/${id}/execute`, { key: apiKey })).status, 200);
    const parent = await eventually(async () => {
      const view = await get(apiKey, `/campaigns/${id}`);
      return view.status === "paused" ? view : undefined;
    }, 30_000, 200);
    assert.match(parent.error_message, /refused the application's credentials.*resume/);
    // The run had started its only page: it completes, keeping the reason without the call to resume.
    const run = await eventually(async () => {
      const runs = (await get(apiKey, `/campaigns/${id}/runs`)).runs as Array<{ id: string; status: string }>;
      return runs.length === 1 && runs[0]!.status === "completed" ? runs[0] : undefined;
    }, 30_000, 200);
    const finished = await get(apiKey, `/campaigns/${run.id}`);
    assert.match(finished.error_message, /refused the application's credentials.*failed \(provider_auth_failed\)/);
    assert.doesNotMatch(finished.error_message, /resume/);
    const resumed = await app.request("POST", `/campaigns/${id}/resume`, { key: apiKey });
    assert.deepEqual([resumed.status, resumed.body.data?.status], [200, "in_progress"]);
    assert.equal((await get(apiKey, `/campaigns/${id}`)).error_message, null);
  });

  test("a run pausing itself over refused credentials waits for an operator's pause of its recurring campaign before locking the run (the API's order), so neither deadlocks", async () => {
    const { id: appId } = await app.createApplication();
    const parentId = await insertRunningCampaign(app, appId, `r-${newId()}`, {}, { schedule: JSON.stringify({ cron: NEVER_SOON, timezone: "UTC" }) });
    const runId = await insertRunningCampaign(app, appId, "run", {}, { parent_campaign_id: parentId, run_key: "run-locks" });
    const db = app.deps.db;
    // The operator's pause, half done: the recurring campaign is updated, its runs not yet.
    const operator = await db.transaction();
    try {
      await operator("message_campaigns").where("id", parentId).update({ status: "paused" });
      const operatorPid = ((await operator.raw("SELECT pg_backend_pid() AS pid")).rows[0] as { pid: number }).pid;
      const selfPause = createCampaignActivities(app.deps).pauseCampaignForCredentials(runId, { provider: "apns", code: "InvalidProviderToken" });
      await eventually(async () => {
        // Blocked by this test's operator transaction: other files' sessions wait on locks too.
        const waiting = await db.raw(`SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND ? = ANY(pg_blocking_pids(pid))`, [operatorPid]);
        return waiting.rows.length > 0 ? true : undefined;
      }, 10_000, 50);
      // It waits without holding the run: the operator's next step can take it.
      const runLocked = await db
        .transaction(async (probe) => probe.raw(`SELECT id FROM message_campaigns WHERE id = ? FOR UPDATE NOWAIT`, [runId]))
        .then(
          () => false,
          (error: { code?: string }) => error.code === "55P03",
        );
      assert.equal(runLocked, false, "the run's row was locked while its recurring campaign's lock was awaited");
      await operator("message_campaigns").where({ parent_campaign_id: parentId, status: "running" }).update({ status: "paused" });
      await operator.commit();
      assert.equal(await selfPause, false, "the operator paused the run first");
    } finally {
      if (!operator.isCompleted()) await operator.rollback();
    }
    const statuses = (await db("message_campaigns").whereIn("id", [parentId, runId]).pluck("status")) as string[];
    assert.deepEqual(statuses, ["paused", "paused"]);
  });

  test("cancelling a recurring campaign while its run's batch creates messages neither deadlocks nor leaves the run sending", async () => {
    const { id: appId } = await app.createApplication();
    const [subscriptionId] = await seedPushSubscriptions(app, appId, 1);
    const parentId = await insertRunningCampaign(app, appId, `r-${newId()}`, {}, { schedule: JSON.stringify({ cron: NEVER_SOON, timezone: "UTC" }) });
    const runId = await insertRunningCampaign(app, appId, "run", {}, { parent_campaign_id: parentId, run_key: "run-cancel-locks" });
    const parent = (await app.deps.db("message_campaigns").where("id", parentId).first()) as Parameters<typeof changeActiveRuns>[1];
    await app.deps.db("message_campaigns").where("id", parentId).update({ status: "cancelled" });
    const db = app.deps.db;
    // A batch creating its messages: it share-locks its run first (createCampaignBatch), inserts later.
    const batch = await db.transaction();
    try {
      await batch("message_campaigns").where("id", runId).forShare().first("id");
      // The operator's cancel: locks the recurring campaign, then waits for the run's row.
      const cancelling = changeActiveRuns(app.deps, { ...parent, status: "cancelled" }, ["running", "paused"], { status: "cancelled" }, cancelSignal);
      const batchPid = ((await batch.raw("SELECT pg_backend_pid() AS pid")).rows[0] as { pid: number }).pid;
      // Blocked by this test's batch transaction: other files' sessions wait on locks too.
      await eventually(async () => ((await db.raw(`SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND ? = ANY(pg_blocking_pids(pid)) AND query ILIKE 'update "message_campaigns"%'`, [batchPid])).rows.length > 0 ? true : undefined), 10_000, 50);
      // The batch's insert: its recurring counts row is new, so the foreign key key-shares the recurring campaign.
      await batch("messages").insert({ application_id: appId, campaign_id: runId, campaign_batch: 0, subscription_id: subscriptionId, subscription_type: "iOSPush", status: "pending", body: "b" });
      await batch.commit();
      await cancelling;
    } finally {
      if (!batch.isCompleted()) await batch.rollback();
    }
    assert.equal((await db("message_campaigns").where("id", runId).first("status")).status, "cancelled", "the run going out was cancelled with it");
  });

  test("pausing, resuming, cancelling and deleting a recurring campaign reach the run going out now", async () => {
    const { id: appId, apiKey } = await app.createApplication({ rate_limit_tier: "enterprise" });
    await seedPushSubscriptions(app, appId, 20);
    const recurring = async () => {
      // 60/min: pages of 10, the second 10 s after the first, so each run is caught mid-way.
      const res = await createRecurring(apiKey, { cron: NEVER_SOON, timezone: "UTC" }, {}, { throttle_per_minute: 60 });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      return res.body.data.campaign_id as string;
    };
    const post = async (path: string) => {
      const res = await app.request("POST", path, { key: apiKey });
      assert.equal(res.status, 200, `${path}: ${JSON.stringify(res.body)}`);
    };
    const statusOf = async (runId: string) => (await get(apiKey, `/campaigns/${runId}`)).status as string;
    const runMidway = async (id: string, count: number) => {
      // Refused (400 campaign_already_started) while the previous run's workflow is still closing.
      // Any other answer fails at once (an assertion inside eventually would only be retried).
      const unexpected: string[] = [];
      await eventually(async () => {
        const executed = await app.request("POST", `/campaigns/${id}/execute`, { key: apiKey });
        if (executed.status === 200) return true;
        if (executed.status !== 400 || executed.body.error?.code !== "campaign_already_started") unexpected.push(JSON.stringify(executed.body));
        return unexpected.length > 0 ? true : undefined;
      }, 15_000, 200);
      assert.deepEqual(unexpected, []);
      return eventually(async () => {
        const runs = (await get(apiKey, `/campaigns/${id}/runs`)).runs as Array<{ id: string; status: string }>;
        const run = runs.length === count ? runs.find((r) => r.status === "in_progress") : undefined;
        return run && Number((await app.deps.db("messages").where("campaign_id", run.id).count({ n: "*" }))[0]!.n) === 10 ? run.id : undefined;
      }, 30_000, 100);
    };
    const progressOf = (runId: string) => app.deps.temporal.workflow.getHandle(campaignWorkflowId(runId)).query(progressQuery);

    const id = await recurring();
    const first = await runMidway(id, 1);
    await post(`/campaigns/${id}/pause`);
    assert.equal(await statusOf(first), "paused");
    await eventually(async () => (await progressOf(first)).paused, 10_000, 100);
    await post(`/campaigns/${id}/resume`);
    assert.equal(await statusOf(first), "in_progress");
    // Paused again by its own id, a repeated resume of the campaign leaves it paused.
    await post(`/campaigns/${first}/pause`);
    await post(`/campaigns/${id}/resume`);
    assert.equal(await statusOf(first), "paused", "a repeat resume does not restart a run paused by its id");
    await post(`/campaigns/${first}/resume`);
    await eventually(async () => (await statusOf(first)) === "completed", 30_000, 250);
    assert.equal((await get(apiKey, `/campaigns/${first}/stats`)).total_recipients, 20, "resumed, the run reached its whole audience");

    const second = await runMidway(id, 2);
    await post(`/campaigns/${id}/cancel`);
    await eventually(async () => (await app.deps.temporal.workflow.getHandle(campaignWorkflowId(second)).describe()).status.name === "COMPLETED", 15_000, 100);
    assert.equal(await statusOf(second), "cancelled");
    assert.equal((await get(apiKey, `/campaigns/${second}`)).total_recipients, 10, "no page after the cancel");

    // Paused, then deleted: the run paused with it is cancelled, not left paused for ever.
    const other = await recurring();
    const third = await runMidway(other, 1);
    await post(`/campaigns/${other}/pause`);
    const deleted = await app.request("DELETE", `/campaigns/${other}`, { key: apiKey });
    assert.equal(deleted.status, 200, JSON.stringify(deleted.body));
    assert.equal(await statusOf(third), "cancelled");
    await eventually(async () => (await app.deps.temporal.workflow.getHandle(campaignWorkflowId(third)).describe()).status.name === "COMPLETED", 15_000, 100);
  });

  /** A recurring campaign and a run of it going out now (no workflow: only the rows matter here). */
  async function recurringWithRunGoingOut() {
    const { id: appId, apiKey } = await app.createApplication({ rate_limit_tier: "enterprise" });
    const res = await createRecurring(apiKey, { cron: NEVER_SOON, timezone: "UTC" });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const parentId = res.body.data.campaign_id as string;
    const runId = await insertRunningCampaign(app, appId, "run", {}, { parent_campaign_id: parentId, run_key: "r1", campaign_type: "immediate" });
    return { appId, apiKey, parentId, runId };
  }

  test("a pause whose runs step lands after a concurrent DELETE leaves no run paused for ever", async () => {
    const { appId, apiKey, parentId, runId } = await recurringWithRunGoingOut();
    // POST /pause, step by step: the campaign is paused...
    const paused = await changeStatusIdempotently(app.deps, appId, parentId, "pause", ["running"], { status: "paused" });
    assert.equal(paused.changed, true);
    // ...then the whole DELETE runs (it cancels paused runs; this one is still running)...
    const deleted = await app.request("DELETE", `/campaigns/${parentId}`, { key: apiKey });
    assert.equal(deleted.status, 200, JSON.stringify(deleted.body));
    // ...then the pause reaches the runs: the campaign is no longer paused, so they stay as they are.
    await changeActiveRuns(app.deps, paused.campaign, ["running"], { status: "paused" }, pauseSignal);
    const run = await app.deps.db("message_campaigns").where({ id: runId }).first();
    assert.equal(run.status, "running", "a run sending finishes (DELETE's rule), never paused with nobody to resume it");
  });

  test("a pause or resume retried after its first attempt died past its commit still moves the run going out", async () => {
    const { appId, apiKey, parentId, runId } = await recurringWithRunGoingOut();
    const runStatus = async () => (await app.deps.db("message_campaigns").where({ id: runId }).first()).status as string;
    // POST /pause's commit, then the process dies (a deploy's kill, PostgreSQL restarting) before
    // it tells Temporal anything; the client retries.
    const first = await changeStatusIdempotently(app.deps, appId, parentId, "pause", ["running"], { status: "paused" }, undefined, { from: ["running"], set: { status: "paused" } });
    assert.equal(first.changed, true);
    const retried = await app.request("POST", `/campaigns/${parentId}/pause`, { key: apiKey });
    assert.deepEqual([retried.status, retried.body.data?.status], [200, "paused"]);
    assert.equal(await runStatus(), "paused", "the run stopped sending with its campaign");
    // The same for resume: a run left paused would hold the schedule's overlap slot for good.
    await changeStatusIdempotently(app.deps, appId, parentId, "resume", ["paused"], { status: "running" }, undefined, { from: ["paused"], set: { status: "running" } });
    const resumed = await app.request("POST", `/campaigns/${parentId}/resume`, { key: apiKey });
    assert.deepEqual([resumed.status, resumed.body.data?.status], [200, "in_progress"]);
    assert.equal(await runStatus(), "running");
  });

  test("concurrent repeats of cancel, pause and resume all answer 200 with the campaign in that state", async () => {
    const { apiKey } = await app.createApplication({ rate_limit_tier: "enterprise" });
    for (let trial = 0; trial < 3; trial += 1) {
      const res = await createRecurring(apiKey, { cron: NEVER_SOON, timezone: "UTC" });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      const id = res.body.data.campaign_id as string;
      for (const [action, status] of [["pause", "paused"], ["resume", "in_progress"], ["cancel", "cancelled"]] as const) {
        const answers = await Promise.all([0, 1, 2].map(() => app.request("POST", `/campaigns/${id}/${action}`, { key: apiKey })));
        assert.deepEqual(answers.map((r) => r.status), [200, 200, 200], `${action}: ${JSON.stringify(answers.map((r) => r.body))}`);
        assert.deepEqual(answers.map((r) => r.body.data.status), [status, status, status], action);
      }
    }
  });

  test("execute racing a DELETE answers the campaign's state, never a 5xx", async () => {
    const { apiKey } = await app.createApplication({ rate_limit_tier: "enterprise" });
    for (let i = 0; i < 15; i++) {
      const res = await createRecurring(apiKey, { cron: NEVER_SOON, timezone: "UTC" });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      const id = res.body.data.campaign_id;
      const [executed, deleted] = await Promise.all([app.request("POST", `/campaigns/${id}/execute`, { key: apiKey }), app.request("DELETE", `/campaigns/${id}`, { key: apiKey })]);
      assert.equal(deleted.status, 200, JSON.stringify(deleted.body));
      // Either it fired first (200), or the delete won and it is refused as ended.
      if (executed.status !== 200) assert.deepEqual([executed.status, executed.body.error.code], [400, "campaign_already_completed"], JSON.stringify(executed.body));
    }
  });

  test("a one-shot campaign has no runs and cannot be deleted (409, use /cancel)", async () => {
    const { apiKey } = await app.createApplication();
    const res = await app.request("POST", "/campaigns", { key: apiKey, body: { name: `o-${newId()}`, title: "Once", body: "Hi" } });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const id = res.body.data.campaign_id;
    const runs = await get(apiKey, `/campaigns/${id}/runs`);
    assert.deepEqual(runs.runs, []);
    assert.equal(runs.pagination.total_items, 0);
    const del = await app.request("DELETE", `/campaigns/${id}`, { key: apiKey });
    assert.equal(del.status, 409);
    assert.equal(del.body.error.code, "invalid_status_transition");
    assert.match(del.body.error.message, /\/cancel/);
    const one = await get(apiKey, `/campaigns/${id}`);
    assert.equal(one.schedule, null);
    assert.equal("next_run_at" in one, false);
  });
});

describe("recurring campaigns end", () => {
  /** Waits until the application has no schedule (schedule visibility lags deletes a little). */
  async function noScheduleLeft(appId: string): Promise<void> {
    await eventually(async () => {
      const found: string[] = [];
      for await (const schedule of app.deps.temporal.schedule.list({ query: `ApplicationId = "${appId}"` })) found.push(schedule.scheduleId);
      return found.length === 0;
    }, 15_000, 500);
  }

  async function campaignCount(appId: string): Promise<number> {
    const [n] = await app.deps.db("message_campaigns").where("application_id", appId).count<{ count: string }[]>({ count: "*" });
    return Number(n!.count);
  }

  test("an end_at that has passed, or a schedule with no fire left, is refused 422 and nothing is written", async () => {
    const { id: appId, apiKey } = await app.createApplication();
    const past = await createRecurring(apiKey, { cron: NEVER_SOON, end_at: new Date(Date.now() - 60_000).toISOString() });
    assert.equal(past.status, 422, JSON.stringify(past.body));
    assert.equal(past.body.error.code, "validation_error");
    assert.ok(past.body.error.details.fields["schedule.end_at"], JSON.stringify(past.body));
    const backwards = await createRecurring(apiKey, { cron: NEVER_SOON, start_at: "2031-01-01T00:00:00Z", end_at: "2030-01-01T00:00:00Z" });
    assert.equal(backwards.status, 422);
    assert.ok(backwards.body.error.details.fields["schedule.end_at"], JSON.stringify(backwards.body));
    // 31 February never comes.
    const never = await createRecurring(apiKey, { cron: "0 9 31 2 *" });
    assert.equal(never.status, 422, JSON.stringify(never.body));
    assert.equal(never.body.error.code, "validation_error");
    assert.ok(never.body.error.details.fields["schedule.cron"], JSON.stringify(never.body));
    // Mondays from Tuesday 2030-01-01 to Sunday 2030-01-06: none.
    const empty = await createRecurring(apiKey, { cron: "0 9 * * MON", start_at: "2030-01-01T00:00:00Z", end_at: "2030-01-06T00:00:00Z" });
    assert.equal(empty.status, 422, JSON.stringify(empty.body));
    assert.ok(empty.body.error.details.fields["schedule.end_at"], JSON.stringify(empty.body));
    // A start beyond the fire times Temporal computes names start_at, not the cron.
    const tooLate = await createRecurring(apiKey, { cron: "0 9 * * MON", start_at: "2200-01-01T00:00:00Z" });
    assert.equal(tooLate.status, 422, JSON.stringify(tooLate.body));
    assert.deepEqual(Object.keys(tooLate.body.error.details.fields), ["schedule.start_at"]);
    assert.equal(await campaignCount(appId), 0);
    // No schedule left behind (schedule visibility lags deletes a little).
    await noScheduleLeft(appId);
    // The same schedule with a Monday inside the range is fine.
    const monday = await createRecurring(apiKey, { cron: "0 9 * * MON", start_at: "2030-01-01T00:00:00Z", end_at: "2030-01-08T00:00:00Z" });
    assert.equal(monday.status, 201, JSON.stringify(monday.body));
    assert.equal((await get(apiKey, `/campaigns/${monday.body.data.campaign_id}`)).next_run_at, "2030-01-07T09:00:00.000Z");
  });

  test("two identical creates with one Idempotency-Key whose schedule never fires: never a 201 for the campaign that was undone", async () => {
    const { id: appId, apiKey } = await app.createApplication({ rate_limit_tier: "enterprise" });
    for (let trial = 0; trial < 5; trial += 1) {
      const headers = { "Idempotency-Key": `never-${trial}-${newId()}` };
      const create = () => app.request("POST", "/campaigns", { key: apiKey, headers, body: { name: `never-${trial}`, title: "Never", body: "31 February", schedule: { cron: "0 9 31 2 *" } } });
      const answers = await Promise.all([create(), create()]);
      // The twin waits for the first create's whole answer, finds no campaign, and is refused the same way.
      assert.deepEqual(answers.map((a) => a.status), [422, 422], JSON.stringify(answers.map((a) => a.body)));
      const retry = await create();
      assert.equal(retry.status, 422, JSON.stringify(retry.body));
    }
    assert.equal(await campaignCount(appId), 0);
    await noScheduleLeft(appId);
  });

  test("a cron that fires more often than AUTOMATA_MIN_SCHEDULE_INTERVAL (1 minute by default), or more than daily with timezone delivery, is refused 422, and nothing is written", async () => {
    const defaults = await startTestApp();
    try {
      const { id: appId, apiKey } = await defaults.createApplication();
      for (const cron of ["* * * * * *", "*/30 * * * * *"]) {
        const res = await defaults.request("POST", "/campaigns", { key: apiKey, body: { name: "too often", title: "T", body: "B", schedule: { cron } } });
        assert.equal(res.status, 422, JSON.stringify(res.body));
        assert.match(res.body.error.details.fields["schedule.cron"], /at most once every 60 s/, cron);
      }
      // Timezone delivery spreads a run over 24 hours: an hourly schedule would skip most fires.
      const delivery = { mode: "timezone", local_time: "09:00" };
      const hourly = await defaults.request("POST", "/campaigns", { key: apiKey, body: { name: "tz hourly", title: "T", body: "B", delivery, schedule: { cron: "0 * * * *" } } });
      assert.equal(hourly.status, 422, JSON.stringify(hourly.body));
      assert.match(hourly.body.error.details.fields.delivery, /at most once a day/);
      assert.equal(await campaignCount(appId), 0);
      const daily = await defaults.request("POST", "/campaigns", { key: apiKey, body: { name: "tz daily", title: "T", body: "B", delivery, schedule: { cron: "0 9 * * *", start_at: "2030-01-01T00:00:00Z" } } });
      assert.equal(daily.status, 201, JSON.stringify(daily.body));
      created.push(daily.body.data.campaign_id);
      const everyMinute = await defaults.request("POST", "/campaigns", { key: apiKey, body: { name: "each minute", title: "T", body: "B", schedule: { cron: "0 * * * * *", start_at: "2030-01-01T00:00:00Z" } } });
      assert.equal(everyMinute.status, 201, JSON.stringify(everyMinute.body));
      created.push(everyMinute.body.data.campaign_id);
    } finally {
      await defaults.close();
    }
  });

  test("a burst of keyed creates, more than the database pool holds, all answer 201 (the turns cannot hold the whole pool)", async () => {
    // An API of its own with a 3-connection pool: each keyed create holds one for its turn while
    // its queries need another, so three turns at once would wait on each other until the pool's
    // acquire timeout (503s for every request of the process).
    const small = await startTestApp({ poolMax: 3 });
    try {
      const { apiKey } = await small.createApplication({ rate_limit_tier: "enterprise" });
      const later = new Date(Date.now() + 86_400_000).toISOString();
      const answers = await Promise.all(
        Array.from({ length: 8 }, (_, i) =>
          small.request("POST", "/campaigns", { key: apiKey, headers: { "Idempotency-Key": `burst-${i}-${newId()}` }, body: { name: `burst-${i}`, title: "Later", body: "Tomorrow", scheduled_at: later } }),
        ),
      );
      assert.deepEqual(answers.map((r) => r.status), Array.from({ length: 8 }, () => 201), JSON.stringify(answers.find((r) => r.status !== 201)?.body));
    } finally {
      await small.close();
    }
  });

  test("after its last fire's run finishes, the recurring campaign is completed and its schedule deleted", async () => {
    const { id: appId, apiKey } = await app.createApplication({ rate_limit_tier: "enterprise" });
    await seedPushSubscriptions(app, appId, 2);
    const endAt = new Date(Date.now() + 7_000);
    const res = await createRecurring(apiKey, { cron: EVERY_3S, end_at: endAt.toISOString() });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const id = res.body.data.campaign_id;
    const { restartOrphanedCampaigns } = createReconcilerActivities(app.deps);
    const done = await eventually(async () => {
      const c = await get(apiKey, `/campaigns/${id}`);
      if (c.status === "completed") return c;
      // On a slow machine the last fire can come while the previous run still sends: overlap SKIP
      // drops it, no run is left to complete the parent, and in a deployment the reconciler
      // schedule does. This test's worker runs none, so its pass runs here once the end is past.
      if (Date.now() > endAt.getTime() + 5_000) await restartOrphanedCampaigns({ olderThanMs: 0, limit: 10, applicationId: appId });
      return undefined;
    }, 40_000, 250);
    assert.ok(done.completed_at && new Date(done.completed_at).getTime() >= endAt.getTime() - 3_000, done.completed_at);
    assert.equal(done.next_run_at, null);
    await assert.rejects(describeSchedule(id), ScheduleNotFoundError);
    const runs = (await get(apiKey, `/campaigns/${id}/runs`)).runs as Array<{ status: string }>;
    assert.ok(runs.length >= 1);
    for (const run of runs) assert.equal(run.status, "completed");
  });

  test("the reconciler completes a parent that can never fire again, and long-lived campaigns cannot starve its pass", async () => {
    const { id: appId, apiKey } = await app.createApplication();
    // Rows dated 2000 (olderThan reaches back to 2001) and a pass limited to this application, so
    // campaigns of other test files sharing this database never take part.
    const olderThanMs = Date.now() - Date.parse("2001-01-01T00:00:00Z");
    const insert = async (day: number, row: Record<string, unknown>) => {
      const id = newId();
      await app.deps.db("message_campaigns").insert({
        id,
        application_id: appId,
        name: `r-${day}`,
        content: JSON.stringify({ title: "t", body: "b", data: {}, options: {}, variables: {} }),
        targeting_criteria: JSON.stringify({ tags: { nobody: id } }),
        status: "running",
        started_at: new Date(),
        created_at: new Date(Date.UTC(2000, 0, day)),
        ...row,
      });
      return id;
    };
    const recurring = (cron: string) => ({ campaign_type: "recurring", schedule: JSON.stringify({ cron, timezone: "UTC" }) });
    // Accepted before schedules were checked: 31 February.
    const impossible = await insert(1, recurring("0 9 31 2 *"));
    // Recurring campaigns that stay active for years, older than the orphan behind them.
    const longLived = [await insert(2, recurring(NEVER_SOON)), await insert(3, recurring(NEVER_SOON)), await insert(4, recurring(NEVER_SOON))];
    created.push(impossible, ...longLived);
    // A one-shot campaign whose workflow never started (Temporal was down at its create).
    const orphan = await insert(5, {});
    const updatedAt = async (id: string) => ((await app.deps.db("message_campaigns").where("id", id).first("updated_at")) as { updated_at: Date }).updated_at.getTime();
    const longLivedUpdatedAt = await Promise.all(longLived.map(updatedAt));
    const { restartOrphanedCampaigns } = createReconcilerActivities(app.deps);
    const passes = [];
    for (let i = 0; i < 3; i++) passes.push(await restartOrphanedCampaigns({ olderThanMs, limit: 2, applicationId: appId }));
    assert.deepEqual(
      passes.map((p) => p.checked),
      [2, 2, 2],
    );
    assert.equal(passes.reduce((n, p) => n + p.started, 0), 1, JSON.stringify(passes));
    assert.equal(passes.reduce((n, p) => n + p.completed, 0), 1, JSON.stringify(passes));
    assert.equal(passes.reduce((n, p) => n + p.failed, 0), 0, JSON.stringify(passes));
    await eventually(async () => (await app.deps.db("message_campaigns").where("id", orphan).first()).status === "completed", 30_000, 200);
    const ended = await get(apiKey, `/campaigns/${impossible}`);
    assert.equal(ended.status, "completed");
    assert.ok(ended.completed_at);
    await assert.rejects(describeSchedule(impossible), ScheduleNotFoundError);
    for (const id of longLived) {
      assert.equal((await get(apiKey, `/campaigns/${id}`)).status, "in_progress");
      assert.equal((await describeSchedule(id)).state.paused, false);
    }
    // Being looked at by the reconciler is not a change: updated_at stays where the last change put it.
    assert.deepEqual(await Promise.all(longLived.map(updatedAt)), longLivedUpdatedAt);
  });

  test("the reconciler fails a recurring campaign whose schedule Temporal refuses, instead of asking again every pass", async () => {
    const { id: appId, apiKey } = await app.createApplication();
    const olderThanMs = Date.now() - Date.parse("2001-01-01T00:00:00Z");
    // As if accepted while Temporal answered too slowly to judge it: a zone Temporal does not know.
    const id = await insertRunningCampaign(app, appId, "refused", { tags: { nobody: "x" } }, {
      campaign_type: "recurring",
      schedule: JSON.stringify({ cron: NEVER_SOON, timezone: "Mars/Olympus_Mons" }),
      created_at: new Date(Date.UTC(2000, 1, 1)),
    });
    created.push(id);
    const { restartOrphanedCampaigns } = createReconcilerActivities(app.deps);
    // One application's rows: other test files share this database.
    const pass = await restartOrphanedCampaigns({ olderThanMs, limit: 50, applicationId: appId });
    assert.equal(pass.failed, 0, JSON.stringify(pass));
    assert.ok(pass.abandoned >= 1, JSON.stringify(pass));
    const failed = await get(apiKey, `/campaigns/${id}`);
    assert.equal(failed.status, "failed");
    assert.ok(failed.completed_at);
    assert.match(failed.error_message, /^Temporal refused the campaign's schedule: .*Mars\/Olympus_Mons/);
    await assert.rejects(describeSchedule(id), ScheduleNotFoundError);
  });
});
