import type { Deps } from "../src/deps";
import { newId } from "../src/db/ids";
import type { CampaignRow } from "../src/campaigns/repository";
import { campaignWorkflowInput } from "../src/campaigns/workflow-client";
import { deleteCampaignSchedule } from "../src/campaigns/schedules";
import type { CampaignWorkflowInput } from "../workflows/campaign";

/** Longest campaign name (the `message_campaigns_name_length` constraint). */
const MAX_NAME = 200;

/** The fire time Temporal appended to the run's workflow id (`…-2026-01-01T09:00:00Z`), if there is one. */
function fireTimeOf(runKey: string): Date | null {
  const match = /-(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z)$/.exec(runKey);
  if (!match) return null;
  const at = new Date(match[1]!);
  return Number.isNaN(at.getTime()) ? null : at;
}

/** Activities of the recurring campaign runs (workflows/campaign-run.ts). */
export function createCampaignRunActivities(deps: Deps) {
  const { db } = deps;
  return {
    /**
     * Creates the campaign row of one fire of a recurring campaign — a copy of the parent's content,
     * targeting, template, throttle and delivery, keyed by (parent_campaign_id, run_key) so a retry
     * returns the same run — and answers its campaign workflow input. Answers null (skip this fire)
     * when the parent is not running: paused, or ended or gone, in which case the schedule that
     * should not exist any more is deleted too.
     */
    async createCampaignRun(input: { parentCampaignId: string; runKey: string }): Promise<CampaignWorkflowInput | null> {
      const existing = await db("message_campaigns").where({ parent_campaign_id: input.parentCampaignId, run_key: input.runKey }).first<CampaignRow | undefined>();
      // A retry after the insert committed: the run exists, whatever the parent did since.
      if (existing) return campaignWorkflowInput(deps.config, existing);
      const parent = await db("message_campaigns").where("id", input.parentCampaignId).first<CampaignRow | undefined>();
      if (!parent || parent.status === "cancelled" || parent.status === "completed" || parent.status === "failed") {
        await deleteCampaignSchedule(deps, input.parentCampaignId);
        return null;
      }
      if (parent.status !== "running") return null;
      const runAt = fireTimeOf(input.runKey) ?? new Date();
      const suffix = ` — ${runAt.toISOString()}`;
      const id = newId();
      const [inserted] = (await db("message_campaigns")
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
          started_at: db.fn.now(),
          workflow_id: `campaign-${id}`,
          created_by: `schedule:campaign-${parent.id}`,
        })
        .onConflict(db.raw("(parent_campaign_id, run_key) where parent_campaign_id is not null"))
        .ignore()
        .returning("*")) as CampaignRow[];
      const run = inserted ?? (await db("message_campaigns").where({ parent_campaign_id: parent.id, run_key: input.runKey }).first<CampaignRow>());
      return campaignWorkflowInput(deps.config, run);
    },
  };
}
