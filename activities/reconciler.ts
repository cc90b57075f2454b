import type { Deps } from "../src/deps";
import { startMessageWorkflows, type StartableMessage } from "../src/messages/workflow-client";
import { messageWorkflowId } from "../workflows/message";
import { WorkflowNotFoundError } from "@temporalio/client";
import { startCampaign, type StartableCampaign } from "../src/campaigns/workflow-client";
import { campaignWorkflowId } from "../workflows/campaign";

/** Activities of the reconciler workflow. */
export function createReconcilerActivities(deps: Deps) {
  return {
    /**
     * Looks at individually sent messages still pending/errored after `olderThanMs` and starts the
     * workflow of each one that has none. Campaign messages are owned by their batch workflows.
     */
    async restartOrphanedMessages(options: { olderThanMs: number; limit: number }): Promise<{ checked: number; started: number }> {
      const candidates = await deps
        .db("messages")
        .whereIn("status", ["pending", "errored"])
        .whereNull("campaign_id")
        .where("created_at", "<", new Date(Date.now() - options.olderThanMs))
        .orderBy("created_at")
        .limit(options.limit)
        .select<StartableMessage[]>("id", "application_id", "subscription_id", "created_at");
      const orphaned: StartableMessage[] = [];
      for (const message of candidates) {
        try {
          await deps.temporal.workflow.getHandle(messageWorkflowId(message.id)).describe();
        } catch (error) {
          if (!(error instanceof WorkflowNotFoundError)) throw error;
          orphaned.push(message);
        }
      }
      if (orphaned.length > 0) {
        await startMessageWorkflows(deps, orphaned);
        deps.logger.warn({ count: orphaned.length }, "reconciler started workflows for orphaned messages");
      }
      return { checked: candidates.length, started: orphaned.length };
    },

    /**
     * Active campaigns (scheduled, running, paused) older than `olderThanMs` whose driver is missing
     * — the API wrote the row but Temporal was unreachable, and no Idempotency-Key replay came —
     * get it started: the campaign workflow, or the Temporal Schedule of a recurring campaign
     * (both idempotent). A workflow that exists in any state is left alone.
     */
    async restartOrphanedCampaigns(options: { olderThanMs: number; limit: number }): Promise<{ checked: number; started: number }> {
      const candidates = (await deps
        .db("message_campaigns")
        .whereIn("status", ["scheduled", "running", "paused"])
        .where("created_at", "<", new Date(Date.now() - options.olderThanMs))
        .orderBy("created_at")
        .limit(options.limit)
        .select("id", "application_id", "scheduled_at", "throttle_per_minute", "delivery", "schedule")) as StartableCampaign[];
      let started = 0;
      for (const campaign of candidates) {
        if (!campaign.schedule) {
          try {
            await deps.temporal.workflow.getHandle(campaignWorkflowId(campaign.id)).describe();
            continue;
          } catch (error) {
            if (!(error instanceof WorkflowNotFoundError)) throw error;
          }
        }
        await startCampaign(deps, campaign);
        if (!campaign.schedule) {
          started += 1;
          deps.logger.warn({ campaign_id: campaign.id }, "reconciler started the workflow of an orphaned campaign");
        }
      }
      return { checked: candidates.length, started };
    },
  };
}
