import type { Knex } from "knex";
import { defineRoute, type RouteSpec } from "../http/route";
import { IdParams } from "../http/validation";
import { ApiError } from "../http/errors";
import { withinApiDeadline } from "../http/temporal-deadline";
import { paginate } from "../http/pagination";
import type { Deps } from "../deps";
import { newId } from "../db/ids";
import { PushOptionsShape } from "../messages/push-options";
import type { MessageRow } from "../messages/transitions";
import { assertQuotaAvailable } from "../quota/quota";
import { loadTemplateForSend } from "../templates/repository";
import { renderTemplate } from "../templates/render";
import { cancelSignal, executeSignal, pauseSignal, resumeSignal } from "../../workflows/campaign";
import { CampaignMessagesQuery, CreateCampaignBody, CreatedCampaign, EstimateBody, ListCampaignsQuery } from "./schemas";
import { audienceQuery, parseRequestedTargetingCriteria, type TargetingCriteria } from "./targeting";
import {
  apiCampaignStatus,
  ACTIVE_CAMPAIGN_STATUSES,
  ENDED_CAMPAIGN_STATUSES,
  WAITING_CAMPAIGN_STATUSES,
  campaignCounts,
  campaignCountsBySubscriptionType,
  sumCounts,
  campaignCountsOf,
  campaignRates,
  remainingRecipients,
  reportedCounts,
  storedCampaignStatus,
  type ReportedCounts,
  type CampaignContent,
  type CampaignDelivery,
  type CampaignRow,
  type CampaignStatus,
} from "./repository";
import { assertCampaignSendable, campaignOptionsView, campaignPushOptions } from "./content";
import { cancelCampaignWorkflow, signalCampaignWorkflow, startCampaign } from "./workflow-client";
import { inIdempotencyTurn } from "./idempotency-turns";
import { iso } from "../http/format";
import type { z } from "zod";
import { fingerprint, idempotencyKeyOf } from "../http/idempotency";
import { referencesRecipient, validatePersonalizedTemplate } from "./personalize";
import {
  assertCampaignScheduleFires,
  assertScheduleEndsLater,
  assertValidCampaignSchedule,
  deleteCampaignSchedule,
  discardUnscheduledCampaign,
  nextCampaignRunAt,
  openScheduleRun,
  refusedScheduleReason,
  setCampaignSchedulePaused,
  triggerCampaignRun,
} from "./schedules";

const TAG = "Campaigns";
const IDEMPOTENCY_HEADER = {
  name: "Idempotency-Key",
  description: "Repeat a create with the same key to get the first campaign back; it is never created or started twice.",
};


/** The five counts REF-001 §6.5 reports per channel (and we per platform). */
function keyFigures(n: ReportedCounts) {
  return { total: n.total, successful: n.successful, failed: n.failed, received: n.received, converted: n.converted };
}

/** The campaign_not_found 404, also for another tenant's campaign. */
function campaignNotFound(id: string): ApiError {
  return new ApiError("campaign_not_found", undefined, { id });
}

/** The application's campaign, or campaign_not_found (also for another tenant's id). */
export async function loadCampaign(deps: Deps, applicationId: string, id: string): Promise<CampaignRow> {
  const campaign = await deps.db("message_campaigns").where({ id, application_id: applicationId }).first<CampaignRow | undefined>();
  if (!campaign) throw campaignNotFound(id);
  return campaign;
}

/** A campaign as the API shows it, with its live counts (`reportedCounts`). */
function campaignView(c: CampaignRow, counts: ReportedCounts) {
  return {
    id: c.id,
    name: c.name,
    description: c.description,
    template_id: c.template_id,
    template_version: c.template_version,
    title: c.content.title,
    body: c.content.body,
    data: c.content.data,
    options: campaignOptionsView(c.content.options),
    variables: c.content.variables,
    targeting_criteria: c.targeting_criteria,
    status: apiCampaignStatus(c.status),
    throttle_per_minute: c.throttle_per_minute,
    delivery: c.delivery,
    scheduled_at: iso(c.scheduled_at),
    started_at: iso(c.started_at),
    completed_at: iso(c.completed_at),
    cancelled_at: iso(c.cancelled_at),
    // Why a `failed` campaign ended (null otherwise).
    error_message: c.error_message,
    created_at: iso(c.created_at),
    created_by: c.created_by,
    total_recipients: counts.total,
    successful_count: counts.successful,
    failed_count: counts.failed,
    // Recorded once when the campaign starts paging (null before); total_recipients counts the
    // messages created so far, as REF-001's examples show (0 while scheduled).
    audience_size: c.audience_size,
    campaign_type: c.campaign_type,
    // Recurring campaigns: the schedule as given; runs: the recurring campaign they belong to.
    schedule: c.schedule,
    parent_campaign_id: c.parent_campaign_id,
  };
}

/**
 * Execute on a recurring campaign: one run now, through its schedule. Refused while paused (resume
 * first: a paused campaign's fires are skipped) and while a run is still sending (the overlap
 * policy would silently skip this one), so the answer says what will happen.
 */
async function executeRecurring(deps: Deps, c: CampaignRow, idempotencyKey: string | undefined) {
  const answer = { id: c.id, status: apiCampaignStatus(c.status), started_at: iso(c.started_at), run_requested: true };
  const repeat = idempotencyKey !== undefined && c.execute_idempotency_key === idempotencyKey && c.execute_requested_at !== null;
  if (repeat && c.status === "running") {
    // The run this key asked for exists (a run started since: a fire is a fire), or its fire is
    // still going: the first answer again. Neither (the first attempt's trigger never reached
    // Temporal): fire now — overlap SKIP drops a second fire while one is going anyway.
    const run = await deps.db("message_campaigns").where({ application_id: c.application_id, parent_campaign_id: c.id }).where("created_at", ">=", c.execute_requested_at).first("id");
    if (run || (await openScheduleRun(deps, c.id))) return answer;
    await triggerCampaignRun(deps, c);
    return answer;
  }
  if (c.status === "paused") throw new ApiError("invalid_status_transition", "The recurring campaign is paused; resume it before running it now", { id: c.id, status: apiCampaignStatus(c.status) });
  if (c.status !== "running") refuse(c, "execute");
  const active = (await deps.db("message_campaigns").where({ application_id: c.application_id, parent_campaign_id: c.id }).whereIn("status", ["running", "paused"]).first("id")) as { id: string } | undefined;
  if (active) throw new ApiError("campaign_already_started", "A run of this recurring campaign is still in progress", { id: c.id, run_id: active.id });
  try {
    const open = await openScheduleRun(deps, c.id);
    if (open) throw new ApiError("campaign_already_started", "A run of this recurring campaign is still finishing; try again in a moment", { id: c.id, run_workflow_id: open });
    // Recorded before the fire: a retry that finds no run since then fires again (above).
    if (idempotencyKey !== undefined) {
      await deps.db("message_campaigns").where({ id: c.id, application_id: c.application_id }).update({ execute_idempotency_key: idempotencyKey, execute_requested_at: deps.db.fn.now() });
    }
    await triggerCampaignRun(deps, c);
  } catch (error) {
    // A DELETE or cancel that won the race removed the schedule under this request (Temporal then
    // fails a describe or a trigger with more than "not found"): the answer is the campaign's new
    // state (400 campaign_already_completed), not a 503 to retry.
    const now = await loadCampaign(deps, c.application_id, c.id);
    if (now.status !== "running") refuse(now, "execute");
    throw error;
  }
  return answer;
}

/** Refuses a state change with the REF-001 code for where the campaign is. */
function refuse(c: CampaignRow, action: string): never {
  const status = apiCampaignStatus(c.status);
  if (ENDED_CAMPAIGN_STATUSES.includes(c.status)) {
    throw new ApiError("campaign_already_completed", `The campaign is ${status}; it cannot ${action}`, { id: c.id, status });
  }
  if (action === "execute") throw new ApiError("campaign_already_started", `The campaign is ${status}: it has started${c.status === "paused" ? "; resume it to go on" : ""}`, { id: c.id, status });
  throw new ApiError("invalid_status_transition", `The campaign is ${status}; it cannot ${action}`, { id: c.id, status });
}

/**
 * Moves a campaign from one of `from` to `to` with a conditional update (PostgreSQL first, then the
 * workflow is signalled), or refuses with the code for its current status.
 */
export async function changeStatus(deps: Deps, applicationId: string, id: string, action: string, from: readonly CampaignStatus[], set: Record<string, unknown>): Promise<CampaignRow> {
  const updated = await updateCampaignFrom(deps.db, applicationId, id, from, set);
  if (updated) return updated;
  refuse(await loadCampaign(deps, applicationId, id), action);
}

/** The conditional update under both: the campaign as updated, or undefined if it was in none of `from`. */
async function updateCampaignFrom(db: Knex, applicationId: string, id: string, from: readonly CampaignStatus[], set: Record<string, unknown>): Promise<CampaignRow | undefined> {
  const [updated] = (await db("message_campaigns").where({ id, application_id: applicationId }).whereIn("status", from).update(set, "*")) as CampaignRow[];
  return updated;
}

/** How a status change of a recurring campaign moves its runs (the ones in `from` take `set`). */
export interface RunsChange {
  from: CampaignStatus[];
  set: Record<string, unknown> & { status: CampaignStatus };
}

/**
 * {@link changeStatus} for the idempotent actions (cancel, pause, resume, delete): a campaign
 * already in `set.status` is answered as it is — also when a concurrent call (a client's retry
 * after a timeout) moved it between our read and our update. `changed` says whether this call did.
 */
export async function changeStatusIdempotently(
  deps: Deps,
  applicationId: string,
  id: string,
  action: string,
  from: readonly CampaignStatus[],
  set: Record<string, unknown> & { status: CampaignStatus },
  /** The campaign as the caller just read it, if it did. */
  read?: CampaignRow,
  /**
   * A recurring campaign's runs move in the same transaction (pause, resume): moved after the
   * campaign's own commit, a request that died in between (PostgreSQL restart, a deploy's kill)
   * left them behind, and its retry, finding the campaign already changed, never moved them.
   */
  runs?: RunsChange,
): Promise<{ campaign: CampaignRow; changed: boolean; runs: CampaignRow[] }> {
  const current = read ?? (await loadCampaign(deps, applicationId, id));
  if (current.status === set.status) return { campaign: current, changed: false, runs: [] };
  const { updated, movedRuns } = await deps.db.transaction(async (trx) => {
    const updated = await updateCampaignFrom(trx, applicationId, id, from, set);
    if (!updated?.schedule || !runs) return { updated, movedRuns: [] };
    const movedRuns = (await trx("message_campaigns").where({ application_id: applicationId, parent_campaign_id: updated.id }).whereIn("status", runs.from).update(runs.set, "*")) as CampaignRow[];
    return { updated, movedRuns };
  });
  if (updated) return { campaign: updated, changed: true, runs: movedRuns };
  const now = await loadCampaign(deps, applicationId, id);
  if (now.status === set.status) return { campaign: now, changed: false, runs: [] };
  refuse(now, action);
}

/**
 * Moves the runs of a recurring campaign that are in `from` as `set` says, then tells their
 * workflows: pausing, resuming or cancelling a recurring campaign reaches the run going out now
 * (an operator stopping a wrong push means that one), not only the fires to come. A cancelled
 * run whose workflow is gone is cleaned up like any cancelled campaign.
 */
export async function changeActiveRuns(
  deps: Deps,
  parent: CampaignRow,
  from: CampaignStatus[],
  set: Record<string, unknown> & { status: CampaignStatus },
  signal: typeof cancelSignal | typeof pauseSignal | typeof resumeSignal,
): Promise<void> {
  // Runs follow the campaign only while it is still where this call put it: a pause whose runs
  // update came after a concurrent DELETE (which cancels paused runs) would otherwise leave its
  // run paused with nothing ever to resume it. The parent's row lock orders the two. NO KEY UPDATE,
  // not UPDATE: a run's batch inserting messages key-shares the parent (the foreign key of its
  // recurring counts) while this waits for the run's row, and FOR UPDATE would deadlock with it.
  const runs = await deps.db.transaction(async (trx) => {
    const still = await trx("message_campaigns").where({ id: parent.id, application_id: parent.application_id, status: set.status }).forNoKeyUpdate().first("id");
    if (!still) return [];
    return (await trx("message_campaigns").where({ application_id: parent.application_id, parent_campaign_id: parent.id }).whereIn("status", from).update(set, "*")) as CampaignRow[];
  });
  await tellRuns(deps, runs, signal);
}

/**
 * Tells the workflows of runs whose status just changed. A signal that does not arrive (Temporal
 * unreachable) only delays the change: each run re-reads its status from PostgreSQL as it polls.
 */
async function tellRuns(deps: Deps, runs: readonly CampaignRow[], signal: typeof cancelSignal | typeof pauseSignal | typeof resumeSignal): Promise<void> {
  for (const run of runs) {
    if (signal === cancelSignal) await cancelCampaignWorkflow(deps, run);
    else await signalCampaignWorkflow(deps, run.id, signal);
  }
}

/**
 * Starts the campaign's workflow or schedule. The row is already committed, so the campaign is
 * accepted even if Temporal is unreachable: the reconciler starts it within
 * AUTOMATA_RECONCILE_INTERVAL, as it does for single messages.
 */
async function startDurably(deps: Deps, campaign: CampaignRow): Promise<void> {
  try {
    await withinApiDeadline(deps, () => startCampaign(deps, campaign));
  } catch (error) {
    // Temporal refused a recurring campaign's spec: retrying never helps, so the create is undone and refused (422).
    if (campaign.schedule && refusedScheduleReason(error) !== null) {
      await discardUnscheduledCampaign(deps, campaign);
      throw error;
    }
    deps.logger.error({ err: error, campaign_id: campaign.id }, "campaign start failed; the reconciler will start it");
  }
}

/**
 * What every recipient gets. A template is rendered once here with the campaign variables, unless
 * it references recipient fields (`{{tags.x}}`): then its source is kept and each batch renders it
 * per recipient (the rendered preview below uses placeholders only for validation). The content is
 * refused here, with POST /messages' codes, when no provider of the audience would take it: later
 * every message of the campaign would fail the same way. `ttl_seconds` is kept relative (see
 * content.ts): it counts from each batch's creation, not from this request.
 */
async function campaignContent(
  deps: Deps,
  applicationId: string,
  body: z.output<typeof CreateCampaignBody>,
  criteria: TargetingCriteria,
  now: Date,
): Promise<{ content: CampaignContent; template?: { templateId: string; version: number } }> {
  if (!body.template_id) {
    const content: CampaignContent = { title: body.title ?? null, body: body.body ?? null, data: body.data ?? {}, options: campaignPushOptions(pushOptionsOf(body), now), variables: {} };
    assertCampaignSendable(content, criteria, now);
    return { content };
  }
  const loaded = await loadTemplateForSend(deps.db, applicationId, body.template_id, body.template_version);
  const variables = body.variables ?? {};
  const options = campaignPushOptions({ ...loaded.content.options, ...pushOptionsOf(body) }, now);
  const template = { templateId: loaded.templateId, version: loaded.version };
  if (referencesRecipient(loaded.content)) {
    // Checked now with a one-character placeholder for every recipient field: syntax, campaign
    // variables, reserved data keys, and sizes of everything but the recipients' own values. What
    // only a recipient's values decide — a long tag making the title or payload too large, a
    // missing required field — is checked per recipient when its batch renders and sends the
    // message: that one message fails (message_too_large / missing_required_variable), the others go.
    const preview = validatePersonalizedTemplate(loaded.content, variables);
    assertCampaignSendable({ ...preview, options }, criteria, now);
    const source = { title: loaded.content.title, body: loaded.content.body, dataTemplate: loaded.content.dataTemplate, variables: loaded.content.variables };
    return { content: { title: loaded.content.title ?? null, body: loaded.content.body ?? null, data: {}, options, variables, personalized: source }, template };
  }
  const rendered = renderTemplate(loaded.content, variables);
  const content: CampaignContent = { title: rendered.title, body: rendered.body, data: rendered.data, options, variables };
  assertCampaignSendable(content, criteria, now);
  return { content, template };
}

function pushOptionsOf(body: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.keys(PushOptionsShape).filter((k) => body[k] !== undefined).map((k) => [k, body[k]]));
}

/** Campaign routes (REF-001 §6 plus pause/resume, messages and audience estimate). */
export const campaignRoutes: RouteSpec[] = [
  defineRoute({
    method: "post",
    path: "/campaigns/estimate",
    summary: "Count the audience a targeting_criteria would reach: devices (by platform) and the distinct users they belong to",
    tag: TAG,
    auth: "apiKey",
    body: EstimateBody,
    responses: { 200: { description: "Audience size" } },
    handler: async ({ body, deps, application }) => {
      const criteria = parseRequestedTargetingCriteria(body.targeting_criteria);
      // One scan: a row per platform plus the grand total (grouping set ()), where distinct users
      // are counted across platforms (a user with an iPhone and an Android phone is one customer).
      const rows = (await audienceQuery(deps.db, application.id, criteria)
        .groupByRaw("grouping sets ((s.subscription_type), ())")
        .select(
          "s.subscription_type",
          deps.db.raw("grouping(s.subscription_type) = 1 as is_total"),
          deps.db.raw("count(*)::int as n"),
          deps.db.raw("count(distinct s.user_id)::int as users"),
          deps.db.raw("(count(*) filter (where s.user_id is null))::int as without_user"),
        )) as Array<{ subscription_type: string | null; is_total: boolean; n: number; users: number; without_user: number }>;
      const total = rows.find((r) => r.is_total);
      const byPlatform = Object.fromEntries(rows.filter((r) => !r.is_total).map((r) => [r.subscription_type, r.n]));
      return { data: { total: total?.n ?? 0, by_subscription_type: byPlatform, users: total?.users ?? 0, devices_without_user: total?.without_user ?? 0 } };
    },
  }),
  defineRoute({
    method: "post",
    path: "/campaigns",
    summary: "Create a campaign; it starts now, or at scheduled_at (a past scheduled_at starts now)",
    tag: TAG,
    auth: "apiKey",
    body: CreateCampaignBody,
    headers: [IDEMPOTENCY_HEADER],
    responses: { 201: { description: "The campaign", schema: CreatedCampaign } },
    handler: async ({ body, deps, application, req }) => {
      const criteria = parseRequestedTargetingCriteria(body.targeting_criteria);
      // Before anything is written: a cron Temporal would refuse, or one firing too often, is the caller's 422.
      if (body.schedule) assertValidCampaignSchedule(body.schedule, deps.config.AUTOMATA_MIN_SCHEDULE_INTERVAL, { timezoneDelivery: body.delivery !== undefined });
      const idempotencyKey = idempotencyKeyOf(req.header("idempotency-key"));
      const requestHash = idempotencyKey ? fingerprint(body) : null;
      const created = (c: CampaignRow) => ({
        status: 201,
        data: { campaign_id: c.id, name: c.name, status: apiCampaignStatus(c.status), scheduled_at: iso(c.scheduled_at), created_at: iso(c.created_at) },
      });
      const replay = async (previous: CampaignRow | undefined) => {
        // Only an older release (no turn-taking below) racing this one can find the row gone:
        // its create was refused and undone; the retry gets that answer itself.
        if (!previous) {
          throw new ApiError("service_unavailable", "A concurrent request with this Idempotency-Key was refused; retry to get its answer", { header: "Idempotency-Key" }, { "Retry-After": "1" });
        }
        if (previous.request_hash !== null && previous.request_hash !== requestHash) {
          throw new ApiError("idempotency_key_reused", undefined, { header: "Idempotency-Key", campaign_id: previous.id });
        }
        // A replay answers the first campaign (and re-attempts its start if that had failed; an
        // ended campaign has nothing to start).
        if (ACTIVE_CAMPAIGN_STATUSES.includes(previous.status)) await startDurably(deps, previous);
        return created(previous);
      };
      // Requests with one key take turns for the whole create: a recurring campaign is written,
      // then undone if its schedule never fires, and a twin must not answer 201 in between.
      if (idempotencyKey) return inIdempotencyTurn(deps, `campaign-idempotency:${application.id}:${idempotencyKey}`, () => createOnce());
      return createOnce();

      async function createOnce() {
        const previous = idempotencyKey
          ? await deps.db("message_campaigns").where({ application_id: application.id, idempotency_key: idempotencyKey }).first<CampaignRow | undefined>()
          : undefined;
        if (previous) return replay(previous);
        const now = new Date();
        // Checked after the replay lookup: a replay of an accepted create answers its campaign even
        // once its end_at has passed.
        if (body.schedule) assertScheduleEndsLater(body.schedule, now);
        const content = await campaignContent(deps, application.id, body, criteria, now);
        const scheduledAt = body.scheduled_at ? new Date(body.scheduled_at) : null;
        const future = scheduledAt !== null && scheduledAt.getTime() > now.getTime();
        const recurring = body.schedule !== undefined;
        // An immediate campaign with no allowance left would only fail every batch: refuse it now.
        // Scheduled and recurring ones are checked when their batches debit (the allowance may have
        // reset by then).
        if (!future && !recurring) await assertQuotaAvailable(deps.db, application.id, 1, now);
        const delivery: CampaignDelivery | null = body.delivery
          ? { mode: "timezone", local_time: body.delivery.local_time, fallback_timezone: body.delivery.fallback_timezone ?? application.timezone ?? "UTC" }
          : null;
        const id = newId();
        const [inserted] = (await deps.db("message_campaigns")
          .insert({
            id,
            application_id: application.id,
            template_id: content.template?.templateId ?? null,
            template_version: content.template?.version ?? null,
            name: body.name,
            description: body.description ?? null,
            campaign_type: recurring ? "recurring" : future ? "scheduled" : "immediate",
            content: JSON.stringify(content.content),
            targeting_criteria: JSON.stringify(criteria),
            // A recurring campaign is `running` while its schedule is active; its runs carry the sends.
            status: future ? "scheduled" : "running",
            throttle_per_minute: body.throttle_per_minute ?? null,
            scheduled_at: scheduledAt,
            started_at: future ? null : now,
            schedule: body.schedule ? JSON.stringify(body.schedule) : null,
            delivery: delivery ? JSON.stringify(delivery) : null,
            workflow_id: `campaign-${id}`,
            created_by: `api_key:${application.apiKeyId}`,
            idempotency_key: idempotencyKey ?? null,
            request_hash: requestHash,
          })
          .onConflict(deps.db.raw("(application_id, idempotency_key) where idempotency_key is not null"))
          .ignore()
          .returning("*")) as CampaignRow[];
        // A concurrent request with the same key won the insert: answer with its campaign (or refuse
        // if its body differed).
        if (!inserted) return replay(await deps.db("message_campaigns").where({ application_id: application.id, idempotency_key: idempotencyKey }).first<CampaignRow | undefined>());
        await startDurably(deps, inserted);
        // A schedule that can never fire (31 February, or no match before end_at) would stay
        // `in_progress` with nothing to run: Temporal computes its fire times, and this create is undone.
        if (inserted.schedule) await assertCampaignScheduleFires(deps, { ...inserted, schedule: inserted.schedule });
        return created(inserted);
      }
    },
  }),
  defineRoute({
    method: "get",
    path: "/campaigns",
    summary: "List campaigns (filters: status, from/to on created_at)",
    tag: TAG,
    auth: "apiKey",
    query: ListCampaignsQuery,
    responses: { 200: { description: "A page of campaigns" } },
    handler: async ({ query, deps, application }) => {
      // Top-level campaigns only: a recurring campaign's runs are listed under GET /campaigns/:id/runs.
      const q = deps.db("message_campaigns").where("application_id", application.id).whereNull("parent_campaign_id").select("*");
      if (query.status) q.where("status", storedCampaignStatus(query.status));
      if (query.from) q.where("created_at", ">=", new Date(query.from));
      if (query.to) q.where("created_at", "<", new Date(query.to));
      const { rows, pagination } = await paginate<CampaignRow>(q, query.page, query.per_page, [
        { column: "created_at", order: "desc" },
        { column: "id", order: "desc" },
      ]);
      const counts = await campaignCountsOf(deps.db, rows.map((c) => c.id));
      const campaigns = rows.map((c) => {
        const n = reportedCounts(counts.get(c.id)!);
        return {
          id: c.id,
          name: c.name,
          status: apiCampaignStatus(c.status),
          scheduled_at: iso(c.scheduled_at),
          started_at: iso(c.started_at),
          completed_at: iso(c.completed_at),
          created_at: iso(c.created_at),
          total_recipients: n.total,
          successful_count: n.successful,
          failed_count: n.failed,
        };
      });
      return { data: { campaigns, pagination } };
    },
  }),
  defineRoute({
    method: "get",
    path: "/campaigns/:id",
    summary: "Get a campaign",
    tag: TAG,
    auth: "apiKey",
    params: IdParams,
    responses: { 200: { description: "The campaign" } },
    handler: async ({ params, deps, application }) => {
      const c = await loadCampaign(deps, application.id, params.id);
      const counts = reportedCounts(await campaignCounts(deps.db, c.id));
      if (!c.schedule) return { data: campaignView(c, counts) };
      return { data: { ...campaignView(c, counts), next_run_at: iso(await nextCampaignRunAt(deps, c)) } };
    },
  }),
  defineRoute({
    method: "post",
    path: "/campaigns/:id/execute",
    summary: "Start a scheduled campaign now; for a recurring campaign, fire one run now (besides its schedule)",
    tag: TAG,
    auth: "apiKey",
    params: IdParams,
    headers: [
      {
        name: "Idempotency-Key",
        description:
          "Recurring campaigns: a repeat of the last execute's key answers the run it fired (200) instead of firing another, also once that run has finished.",
      },
    ],
    responses: { 200: { description: "The campaign, in progress" } },
    handler: async ({ params, deps, application, req }) => {
      const current = await loadCampaign(deps, application.id, params.id);
      if (current.schedule) return { data: await executeRecurring(deps, current, idempotencyKeyOf(req.header("idempotency-key"))) };
      const c = await changeStatus(deps, application.id, params.id, "execute", WAITING_CAMPAIGN_STATUSES, { status: "running", started_at: deps.db.fn.now() });
      // No workflow yet (Temporal was down when the campaign was created): start it now rather
      // than leave the early start to the reconciler's next pass.
      if ((await signalCampaignWorkflow(deps, c.id, executeSignal)) === "no_workflow") await startDurably(deps, c);
      return { data: { id: c.id, status: apiCampaignStatus(c.status), started_at: iso(c.started_at) } };
    },
  }),
  defineRoute({
    method: "post",
    path: "/campaigns/:id/cancel",
    summary: "Cancel a scheduled, running or paused campaign (unsent messages are cancelled; a recurring campaign's run in progress too; idempotent)",
    tag: TAG,
    auth: "apiKey",
    params: IdParams,
    responses: { 200: { description: "The cancelled campaign" } },
    handler: async ({ params, deps, application }) => {
      const { campaign: c } = await changeStatusIdempotently(deps, application.id, params.id, "cancel", ["draft", "scheduled", "running", "paused"], { status: "cancelled", cancelled_at: deps.db.fn.now() });
      // Recurring: no further runs, and the run in progress is cancelled with it.
      if (c.schedule) {
        await deleteCampaignSchedule(deps, c.id);
        await changeActiveRuns(deps, c, ["running", "paused"], { status: "cancelled", cancelled_at: deps.db.fn.now() }, cancelSignal);
      } else await cancelCampaignWorkflow(deps, c);
      return { data: { id: c.id, status: apiCampaignStatus(c.status), cancelled_at: iso(c.cancelled_at) } };
    },
  }),
  defineRoute({
    method: "post",
    path: "/campaigns/:id/pause",
    summary: "Pause a campaign in progress: no new batch starts (batches already sending finish; a recurring campaign's schedule and run in progress pause); pausing a paused campaign answers it again",
    tag: TAG,
    auth: "apiKey",
    params: IdParams,
    responses: { 200: { description: "The paused campaign" } },
    handler: async ({ params, deps, application }) => {
      // Idempotent like cancel: a retried pause answers 200 with the paused campaign. Recurring:
      // the run in progress pauses with it, in the same commit — only when this call paused the
      // campaign, so a repeat never re-pauses a run an operator resumed by its id.
      const { campaign: c, runs } = await changeStatusIdempotently(deps, application.id, params.id, "pause", ["running"], { status: "paused" }, undefined, { from: ["running"], set: { status: "paused" } });
      // The schedule takes no fire while paused (told again on a repeat: it re-delivers a change
      // Temporal may have missed).
      if (c.schedule) {
        await setCampaignSchedulePaused(deps, c.id, true);
        await tellRuns(deps, runs, pauseSignal);
      } else await signalCampaignWorkflow(deps, c.id, pauseSignal);
      return { data: { id: c.id, status: apiCampaignStatus(c.status) } };
    },
  }),
  defineRoute({
    method: "post",
    path: "/campaigns/:id/resume",
    summary: "Resume a paused campaign (a recurring campaign's schedule and paused run too); resuming a campaign in progress answers it again",
    tag: TAG,
    auth: "apiKey",
    params: IdParams,
    responses: { 200: { description: "The campaign, in progress" } },
    handler: async ({ params, deps, application }) => {
      // Idempotent like cancel: a retried resume answers 200 with the campaign in progress.
      // Recurring: its paused runs resume with it, in the same commit — only when this call
      // resumed the campaign, so a repeat never restarts a run an operator paused by its own id.
      // A pause the campaign made itself (its provider refused the credentials) said why in
      // error_message; resuming clears it.
      const { campaign: c, runs } = await changeStatusIdempotently(deps, application.id, params.id, "resume", ["paused"], { status: "running", error_message: null }, undefined, { from: ["paused"], set: { status: "running", error_message: null } });
      if (c.schedule) {
        await setCampaignSchedulePaused(deps, c.id, false);
        await tellRuns(deps, runs, resumeSignal);
      } else await signalCampaignWorkflow(deps, c.id, resumeSignal);
      return { data: { id: c.id, status: apiCampaignStatus(c.status) } };
    },
  }),
  defineRoute({
    method: "get",
    path: "/campaigns/:id/stats",
    summary: "Delivery and engagement statistics, from live per-status counts of the campaign's messages",
    tag: TAG,
    auth: "apiKey",
    params: IdParams,
    responses: { 200: { description: "Statistics (REF-001 §6.5)" } },
    handler: async ({ params, deps, application }) => {
      const c = await loadCampaign(deps, application.id, params.id);
      // One read: the totals are the per-type figures added up, so the two always agree.
      const perType = await campaignCountsBySubscriptionType(deps.db, c.id);
      const totals = sumCounts(perType.values());
      const n = reportedCounts(totals);
      const push = keyFigures(n);
      // DESIGN-005's report shows the key figures per device platform (iOS and Android side by side).
      const byType = [...perType].map(([type, counts]) => {
        return [type, { ...keyFigures(reportedCounts(counts)), ...campaignRates(counts) }] as const;
      });
      return {
        data: {
          id: c.id,
          name: c.name,
          status: apiCampaignStatus(c.status),
          total_recipients: n.total,
          successful_count: n.successful,
          failed_count: n.failed,
          received_count: n.received,
          converted_count: n.converted,
          cancelled_count: n.cancelled,
          pending_count: n.pending,
          audience_size: c.audience_size,
          remaining: remainingRecipients(c, n),
          channel_stats: { push },
          by_subscription_type: Object.fromEntries(byType),
          ...campaignRates(totals),
          started_at: iso(c.started_at),
          completed_at: iso(c.completed_at),
          cancelled_at: iso(c.cancelled_at),
        },
      };
    },
  }),
  defineRoute({
    method: "get",
    path: "/campaigns/:id/messages",
    summary: "List a campaign's messages (filters: status, error_code)",
    tag: TAG,
    auth: "apiKey",
    params: IdParams,
    query: CampaignMessagesQuery,
    responses: { 200: { description: "A page of messages" } },
    handler: async ({ params, query, deps, application }) => {
      const c = await loadCampaign(deps, application.id, params.id);
      const q = deps.db("messages").where({ application_id: application.id }).select("*");
      // A recurring campaign's messages are its runs' (each message names its run in campaign_id).
      if (c.schedule) q.whereIn("campaign_id", deps.db("message_campaigns").select("id").where({ application_id: application.id, parent_campaign_id: c.id }));
      else q.where("campaign_id", c.id);
      if (query.status) q.where("status", query.status);
      if (query.error_code) q.where("error_code", query.error_code);
      const { rows, pagination } = await paginate<MessageRow>(q, query.page, query.per_page, [{ column: "id", order: "asc" }]);
      const messages = rows.map((m) => ({
        id: m.id,
        campaign_id: m.campaign_id,
        subscription_id: m.subscription_id,
        status: m.status,
        error_code: m.error_code,
        created_at: iso(m.created_at),
        sent_at: iso(m.sent_at),
        received_at: iso(m.received_at),
        converted_at: iso(m.converted_at),
        failed_at: iso(m.failed_at),
        cancelled_at: iso(m.cancelled_at),
      }));
      return { data: { messages, pagination } };
    },
  }),
];
