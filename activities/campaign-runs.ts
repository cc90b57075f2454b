import type { Knex } from "knex";
import { Context } from "@temporalio/activity";
import { heartbeatingWhile } from "./heartbeat";
import { WorkflowFailedError, WorkflowNotFoundError } from "@temporalio/client";
import type { Deps } from "../src/deps";
import { newId } from "../src/db/ids";
import { applicationIsActive, ENDED_CAMPAIGN_STATUSES, statusToActOn, type CampaignRow } from "../src/campaigns/repository";
import { campaignWorkflowInput } from "../src/campaigns/workflow-client";
import { CAMPAIGN_CATCHUP_WINDOW_MS, deleteCampaignSchedule, repeatedWallTimeIsDuplicate, runFireTime } from "../src/campaigns/schedules";
import { sameLocalWallTime } from "../src/campaigns/timezones";
import { campaignWorkflowId, type CampaignWorkflowInput } from "../workflows/campaign";
import { campaignFiresSkippedTotal } from "../src/metrics/registry";

/** Longest campaign name (the `message_campaigns_name_length` constraint). */
const MAX_NAME = 200;

/** Activities of the recurring campaign runs (workflows/campaign-run.ts). */
export function createCampaignRunActivities(deps: Deps) {
  const { db } = deps;

  /**
   * True when an earlier run of `parent`, whose cron fires at least two hours apart, fired at the
   * same wall-clock time in the schedule's zone: Temporal fires such a cron twice in the hour a DST
   * fall-back repeats (01:30 EDT, then 01:30 EST), and each fire has its own run key, so without
   * this every recipient got that push twice.
   */
  async function repeatsLocalFire(trx: Knex.Transaction, parent: CampaignRow, runAt: Date): Promise<boolean> {
    const { schedule } = parent;
    if (!schedule?.timezone || !repeatedWallTimeIsDuplicate(schedule.cron)) return false;
    const zone = schedule.timezone;
    // The repeated hour's earlier fire is at most an hour (the largest DST shift: two) before.
    const recent = (await trx("message_campaigns")
      .where("parent_campaign_id", parent.id)
      .where("created_at", ">", trx.raw("now() - interval '3 hours'"))
      .select("run_key")) as Array<{ run_key: string | null }>;
    return recent.some((run) => {
      const firedAt = run.run_key === null ? null : runFireTime(run.run_key);
      return firedAt !== null && firedAt.getTime() !== runAt.getTime() && sameLocalWallTime(firedAt, runAt, zone);
    });
  }

  return {
    /**
     * Waits until the campaign workflow of a run ends, however it ends, heartbeating meanwhile
     * (a worker that dies mid-wait lets the retry wait again). For a run whose workflow the
     * reconciler started before the run's wrapper could: the wrapper must stay open as long as
     * the run sends, or the schedule's overlap SKIP would start the next fire beside it.
     */
    async awaitRunCampaignWorkflow(runCampaignId: string): Promise<void> {
      try {
        // Cancellation (a worker shutting down, the wrapper cancelled) ends the wait: the attempt
        // fails and Temporal retries it elsewhere, rather than holding the worker's shutdown.
        await heartbeatingWhile(() => Promise.race([deps.temporal.workflow.getHandle(campaignWorkflowId(runCampaignId)).result(), Context.current().cancelled]));
      } catch (error) {
        // Failed, cancelled or terminated, or gone: ended all the same, which is what the wrapper
        // waits for. Anything else (Temporal unreachable, this attempt cancelled) is retried.
        if (!(error instanceof WorkflowFailedError || error instanceof WorkflowNotFoundError)) throw error;
        deps.logger.info({ campaign_id: runCampaignId, err: error }, "the run's campaign workflow did not complete; its wrapper ends with it");
      }
    },

    /**
     * Creates the campaign row of one fire of a recurring campaign — a copy of the parent's content,
     * targeting, template, throttle and delivery, keyed by (parent_campaign_id, run_key) so a retry
     * returns the same run — and answers its campaign workflow input. Answers null (skip this fire)
     * when the parent is not running: paused (or its application deactivated), or ended or gone, in which case the schedule that
     * should not exist any more is deleted too.
     */
    async createCampaignRun(input: { parentCampaignId: string; runKey: string }): Promise<CampaignWorkflowInput | null> {
      const existing = await db("message_campaigns").where({ parent_campaign_id: input.parentCampaignId, run_key: input.runKey }).first<CampaignRow | undefined>();
      // A retry after the insert committed: the run exists, whatever the parent did since.
      if (existing) return campaignWorkflowInput(deps.config, existing);
      // A fire that waited past the schedules' catch-up window (this activity retrying through a
      // database outage) is dropped, as Temporal drops one it missed: sent late, a timezone-delivery
      // run planned its groups from well after the fire, moved that day's local time to the next
      // day and, still open then, made overlap SKIP eat the next fire.
      const firedAt = runFireTime(input.runKey);
      if (firedAt !== null && Date.now() - firedAt.getTime() > CAMPAIGN_CATCHUP_WINDOW_MS) {
        deps.logger.warn({ campaign_id: input.parentCampaignId, fired_at: firedAt.toISOString() }, "a recurring campaign's fire came more than the catch-up window late; it makes no run");
        campaignFiresSkippedTotal.inc({ reason: "late" });
        return null;
      }
      // The parent's row is share-locked from its read to the run's insert: a pause or cancel
      // (an UPDATE of that row) either comes first and this fire is skipped, or waits for the run
      // to exist and then reaches it (they move the parent's active runs with it).
      const outcome = await db.transaction(async (trx): Promise<CampaignRow | "paused" | "repeated_wall_time" | "ended"> => {
        const parent = await trx("message_campaigns").where("id", input.parentCampaignId).forShare().first<CampaignRow | undefined>();
        if (!parent || ENDED_CAMPAIGN_STATUSES.includes(parent.status)) return "ended";
        // Paused, or held because its application is deactivated: this fire is skipped.
        if (statusToActOn(parent.status, await applicationIsActive(trx, parent.application_id)) !== "running") return "paused";
        const runAt = runFireTime(input.runKey) ?? new Date();
        if (await repeatsLocalFire(trx, parent, runAt)) return "repeated_wall_time";
        const suffix = ` — ${runAt.toISOString()}`;
        const id = newId();
        const [inserted] = (await trx("message_campaigns")
          .insert({
            id,
            application_id: parent.application_id,
            parent_campaign_id: parent.id,
            run_key: input.runKey,
            template_id: parent.template_id,
            template_version: parent.template_version,
            name: `${parent.name.slice(0, MAX_NAME - suffix.length)}${suffix}`,
            description: parent.description,
            campaign_type: "immediate",
            content: JSON.stringify(parent.content),
            targeting_criteria: JSON.stringify(parent.targeting_criteria),
            status: "running",
            throttle_per_minute: parent.throttle_per_minute,
            delivery: parent.delivery ? JSON.stringify(parent.delivery) : null,
            started_at: trx.fn.now(),
            workflow_id: `campaign-${id}`,
            created_by: `schedule:campaign-${parent.id}`,
          })
          .onConflict(trx.raw("(parent_campaign_id, run_key) where parent_campaign_id is not null"))
          .ignore()
          .returning("*")) as CampaignRow[];
        return inserted ?? (await trx("message_campaigns").where({ parent_campaign_id: parent.id, run_key: input.runKey }).first<CampaignRow>());
      });
      if (typeof outcome === "string") {
        // The schedule of an ended campaign should not exist any more.
        if (outcome === "ended") await deleteCampaignSchedule(deps, input.parentCampaignId);
        campaignFiresSkippedTotal.inc({ reason: outcome });
        return null;
      }
      return campaignWorkflowInput(deps.config, outcome);
    },
  };
}
