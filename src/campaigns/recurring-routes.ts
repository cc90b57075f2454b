import { defineRoute, type RouteSpec } from "../http/route";
import { IdParams } from "../http/validation";
import { ApiError } from "../http/errors";
import { paginate, PaginationQuery } from "../http/pagination";
import { iso } from "../http/format";
import type { CampaignRow } from "./repository";
import { changeStatus, loadCampaign } from "./routes";
import { deleteCampaignSchedule } from "./schedules";

const TAG = "Campaigns";

/** Query of `GET /campaigns/:id/runs`. */
const RunsQuery = PaginationQuery.strict();

/** One run's message counts, with the stats endpoint's meaning of successful and received. */
interface RunStats {
  total: number;
  successful: number;
  failed: number;
  received: number;
  converted: number;
  cancelled: number;
  pending: number;
}

/** Recurring campaign routes: its runs, and DELETE (stop the schedule). */
export const recurringCampaignRoutes: RouteSpec[] = [
  defineRoute({
    method: "get",
    path: "/campaigns/:id/runs",
    summary: "List a recurring campaign's runs (one per schedule fire), newest first, each with its own stats; a one-shot campaign has none",
    tag: TAG,
    auth: "apiKey",
    params: IdParams,
    query: RunsQuery,
    responses: { 200: { description: "A page of runs" } },
    handler: async ({ params, query, deps, application }) => {
      const c = await loadCampaign(deps, application.id, params.id);
      const q = deps.db("message_campaigns").where({ application_id: application.id, parent_campaign_id: c.id }).select("*");
      const { rows, pagination } = await paginate<CampaignRow>(q, query.page, query.per_page, [
        { column: "created_at", order: "desc" },
        { column: "id", order: "desc" },
      ]);
      // The whole page's counts in one grouped query (messages (campaign_id, status) index).
      const counted = rows.length
        ? ((await deps
            .db("messages")
            .where("application_id", application.id)
            .whereIn(
              "campaign_id",
              rows.map((r) => r.id),
            )
            .groupBy("campaign_id", "status")
            .select("campaign_id", "status", deps.db.raw("count(*)::int as n"))) as Array<{ campaign_id: string; status: string; n: number }>)
        : [];
      const stats = new Map<string, RunStats>(rows.map((r) => [r.id, { total: 0, successful: 0, failed: 0, received: 0, converted: 0, cancelled: 0, pending: 0 }]));
      for (const { campaign_id, status, n } of counted) {
        const s = stats.get(campaign_id)!;
        s.total += n;
        // Accepted by the provider and not (yet) failed: successful, received or converted now.
        if (status === "successful" || status === "received" || status === "converted") s.successful += n;
        if (status === "received" || status === "converted") s.received += n;
        if (status === "converted") s.converted += n;
        if (status === "failed") s.failed += n;
        if (status === "cancelled") s.cancelled += n;
        if (status === "pending" || status === "errored") s.pending += n;
      }
      const runs = rows.map((r) => ({
        id: r.id,
        name: r.name,
        status: r.status,
        started_at: iso(r.started_at),
        completed_at: iso(r.completed_at),
        cancelled_at: iso(r.cancelled_at),
        created_at: iso(r.created_at),
        stats: stats.get(r.id),
      }));
      return { data: { runs, pagination } };
    },
  }),
  defineRoute({
    method: "delete",
    path: "/campaigns/:id",
    summary: "Stop a recurring campaign: its schedule is deleted and it is cancelled; past runs keep their history and a run in progress finishes (idempotent)",
    tag: TAG,
    auth: "apiKey",
    params: IdParams,
    responses: { 200: { description: "The cancelled campaign" } },
    handler: async ({ params, deps, application }) => {
      const current = await loadCampaign(deps, application.id, params.id);
      if (!current.schedule) {
        throw new ApiError("invalid_status_transition", "Only a recurring campaign can be deleted; cancel this one with POST /campaigns/:id/cancel", {
          id: current.id,
          campaign_type: current.campaign_type,
        });
      }
      const c =
        current.status === "cancelled"
          ? current
          : await changeStatus(deps, application.id, params.id, "be deleted", ["running", "paused"], { status: "cancelled", cancelled_at: deps.db.fn.now() });
      // PostgreSQL first: a fire racing this delete sees the cancelled campaign and skips.
      await deleteCampaignSchedule(deps, c.id);
      return { data: { id: c.id, status: c.status, cancelled_at: iso(c.cancelled_at) } };
    },
  }),
];
