import { defineRoute, type RouteSpec } from "../http/route";
import { IdParams } from "../http/validation";
import { ApiError } from "../http/errors";
import { paginate, PaginationQuery } from "../http/pagination";
import { iso } from "../http/format";
import { apiCampaignStatus, campaignCountsOf, reportedCounts, type CampaignRow } from "./repository";
import { changeActiveRuns, changeStatusIdempotently, loadCampaign } from "./routes";
import { cancelSignal } from "../../workflows/campaign";
import { deleteCampaignSchedule } from "./schedules";

const TAG = "Campaigns";

/** Query of `GET /campaigns/:id/runs`. */
const RunsQuery = PaginationQuery.strict();

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
      // The whole page's counts in one query over campaign_message_counts.
      const counts = await campaignCountsOf(
        deps.db,
        rows.map((r) => r.id),
      );
      const runs = rows.map((r) => ({
        id: r.id,
        name: r.name,
        status: apiCampaignStatus(r.status),
        started_at: iso(r.started_at),
        completed_at: iso(r.completed_at),
        cancelled_at: iso(r.cancelled_at),
        created_at: iso(r.created_at),
        stats: reportedCounts(counts.get(r.id)!),
      }));
      return { data: { runs, pagination } };
    },
  }),
  defineRoute({
    method: "delete",
    path: "/campaigns/:id",
    summary: "Stop a recurring campaign: its schedule is deleted and it is cancelled; past runs keep their history, a run sending finishes, a paused run is cancelled (idempotent)",
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
      const { campaign: c } = await changeStatusIdempotently(deps, application.id, params.id, "be deleted", ["running", "paused"], { status: "cancelled", cancelled_at: deps.db.fn.now() }, current);
      // PostgreSQL first: a fire racing this delete sees the cancelled campaign and skips.
      await deleteCampaignSchedule(deps, c.id);
      // A run sending finishes; a paused one (paused with the campaign, or by its id) is cancelled:
      // with the campaign gone nothing would ever resume it.
      await changeActiveRuns(deps, c, ["paused"], { status: "cancelled", cancelled_at: deps.db.fn.now() }, cancelSignal);
      return { data: { id: c.id, status: apiCampaignStatus(c.status), cancelled_at: iso(c.cancelled_at) } };
    },
  }),
];
