/**
 * Recurring campaigns: one Temporal Schedule per campaign (`campaign-<id>`) whose action starts
 * `campaignRunWorkflow`; each fire creates a run row and runs the ordinary campaign workflow.
 * PostgreSQL's status is the truth (running / paused / cancelled); the schedule follows it, and a
 * fire re-checks it, so a schedule call that failed delays nothing that matters: the run is skipped
 * and the schedule converges on the next reconcile or fire.
 */
import { ScheduleAlreadyRunning, ScheduleNotFoundError, ScheduleOverlapPolicy, WorkflowNotFoundError, type ScheduleOptions } from "@temporalio/client";
import type { Deps } from "../deps";
import { ApiError } from "../http/errors";
import { runtimeTimeZoneName } from "../time-zones";
import { ApplicationIdKey, CampaignIdKey } from "../../temporal/search-attributes";
import { campaignRunWorkflow } from "../../workflows/campaign-run";
import { ACTIVE_CAMPAIGN_STATUSES, ENDED_CAMPAIGN_STATUSES, type CampaignRow, type CampaignSchedule } from "./repository";
import { withinApiDeadline } from "../http/temporal-deadline";

/**
 * How late a missed fire may still run after an outage (Temporal's default is one year). A push is
 * time-bound — a 09:00 "good morning" delivered at 15:00 is worse than none — so a worker restart or
 * deploy still delivers the fire, a long outage skips it; with overlap SKIP at most one of the missed
 * fires starts anyway, so an outage can never burst several runs.
 */
export const CAMPAIGN_CATCHUP_WINDOW_MS = 10 * 60_000;

/** Schedule id of a recurring campaign. */
export function campaignScheduleId(campaignId: string): string {
  return `campaign-${campaignId}`;
}

/** Workflow id the schedule gives its runs; Temporal appends each fire's time, so runs never collide. */
export function campaignRunWorkflowIdPrefix(campaignId: string): string {
  return `campaign-${campaignId}-run`;
}

/** The fire time Temporal appended to a run's workflow id (`…-2026-01-01T09:00:00Z`), if there is one. */
export function runFireTime(runKey: string): Date | null {
  const match = /-(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z)$/.exec(runKey);
  if (!match) return null;
  const at = new Date(match[1]!);
  return Number.isNaN(at.getTime()) ? null : at;
}

// ------------------------------------------------------------------------------------- cron

interface CronField {
  name: string;
  min: number;
  max: number;
  /** Names accepted like Temporal does: a prefix of at least `minPrefix` letters. */
  names?: readonly string[];
  minPrefix?: number;
}

const MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november", "december"];
const DAYS = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"];
const SECOND: CronField = { name: "second", min: 0, max: 59 };
const FIELDS: readonly CronField[] = [
  { name: "minute", min: 0, max: 59 },
  { name: "hour", min: 0, max: 23 },
  { name: "day of month", min: 1, max: 31 },
  { name: "month", min: 1, max: 12, names: MONTHS, minPrefix: 3 },
  // 0 and 7 are both Sunday, as in Temporal.
  { name: "day of week", min: 0, max: 7, names: DAYS, minPrefix: 2 },
];
const PREDEFINED: Record<string, string> = {
  "@yearly": "0 0 1 1 *",
  "@annually": "0 0 1 1 *",
  "@monthly": "0 0 1 * *",
  "@weekly": "0 0 * * 0",
  "@daily": "0 0 * * *",
  "@midnight": "0 0 * * *",
  "@hourly": "0 * * * *",
};

/** A cron expression Temporal would refuse (or misread); the message says which field. */
export class InvalidCronError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvalidCronError";
  }
}

function cronValue(text: string, field: CronField, min: number): number {
  let value: number | undefined;
  if (field.names && text.length >= (field.minPrefix ?? 3) && /^[a-z]+$/i.test(text)) {
    const index = field.names.findIndex((n) => n.startsWith(text.toLowerCase()));
    if (index >= 0) value = field.names === MONTHS ? index + 1 : index;
  }
  if (value === undefined) {
    if (!/^\d+$/.test(text)) throw new InvalidCronError(`${field.name}: "${text}" is not a number${field.names ? " or name" : ""}`);
    value = Number(text);
  }
  // Names too: Temporal refuses a range that ends before it starts (SAT-SUN, DEC-JAN).
  if (value < min || value > field.max) throw new InvalidCronError(`${field.name}: ${text} is out of range ${min}-${field.max}`);
  return value;
}

/** Checks one field with Temporal's grammar: `*`, `x`, `x-y`, each with an optional `/step`, comma-separated. */
function checkCronField(text: string, field: CronField): void {
  for (const part of text.split(",")) {
    const [range, step, extra] = part.split("/");
    if (extra !== undefined || range === undefined || range === "") throw new InvalidCronError(`${field.name}: "${part}" is malformed`);
    if (step !== undefined && (!/^\d+$/.test(step) || Number(step) < 1)) throw new InvalidCronError(`${field.name}: step "${step}" must be a positive integer`);
    if (range === "*") continue;
    const bounds = range.split("-");
    if (bounds.length > 2) throw new InvalidCronError(`${field.name}: "${range}" is malformed`);
    const start = cronValue(bounds[0]!, field, field.min);
    if (bounds.length === 2) cronValue(bounds[1]!, field, start);
  }
}

/**
 * Translates the API's cron into the string Temporal parses. Accepted: 5 fields (minute hour
 * day-of-month month day-of-week), 6 fields with a leading seconds field, and @hourly, @daily,
 * @weekly, @monthly, @yearly. Temporal reads a 6-field string as *minute … year*, not seconds
 * first, so a seconds spec is sent as its 7-field form (seconds … year) with year `*`. Temporal's
 * own `@every` and `CRON_TZ=` forms are refused: `schedule.timezone` carries the zone.
 */
export function temporalCronExpression(cron: string): string {
  const trimmed = cron.trim();
  if (/^(CRON_)?TZ=/i.test(trimmed)) throw new InvalidCronError("give the timezone in schedule.timezone, not in the expression");
  if (trimmed.startsWith("@")) {
    const predefined = PREDEFINED[trimmed.toLowerCase()];
    if (!predefined) throw new InvalidCronError(`unknown macro ${trimmed} (use @hourly, @daily, @weekly, @monthly or @yearly)`);
    return predefined;
  }
  const fields = trimmed.split(/\s+/);
  if (fields.length === 5) {
    fields.forEach((f, i) => checkCronField(f, FIELDS[i]!));
    return fields.join(" ");
  }
  if (fields.length === 6) {
    checkCronField(fields[0]!, SECOND);
    fields.slice(1).forEach((f, i) => checkCronField(f, FIELDS[i]!));
    return [...fields, "*"].join(" ");
  }
  throw new InvalidCronError(`expected 5 fields (minute hour day-of-month month day-of-week) or 6 with leading seconds, got ${fields.length}`);
}

/**
 * True when two fires of the cron at the same local wall time can only be a DST fall-back
 * repeating that time: its fires are at least two hours apart (daily, weekly, twice a day at 01:30
 * and 13:30, …), more than a fall-back's hour. An hourly or finer cron fires legitimately in the
 * repeated hour.
 */
export function repeatedWallTimeIsDuplicate(cron: string): boolean {
  return shortestCronIntervalSeconds(cron) >= 7_200;
}

/** The values a seconds, minutes or hours field matches, ascending (those fields take no names). */
function cronFieldValues(text: string, field: CronField): number[] {
  const values = new Set<number>();
  for (const part of text.split(",")) {
    const [range, step] = part.split("/");
    const bounds = range === "*" ? [field.min, field.max] : range!.split("-").map(Number);
    // `x/step` runs from x to the field's end, as in Temporal (and Vixie cron).
    const to = bounds.length === 2 ? bounds[1]! : step !== undefined ? field.max : bounds[0]!;
    for (let value = bounds[0]!; value <= to; value += Number(step ?? 1)) values.add(value);
  }
  return [...values].sort((a, b) => a - b);
}

/** The shortest distance between neighbouring values of a cyclic field, wrapping around; undefined for one value. */
function shortestGap(values: readonly number[], cycle: number): number | undefined {
  if (values.length < 2) return undefined;
  let gap = cycle - values[values.length - 1]! + values[0]!;
  for (let i = 1; i < values.length; i++) gap = Math.min(gap, values[i]! - values[i - 1]!);
  return gap;
}

/**
 * A lower bound, in seconds, on the time between two fires of `cron`: the shortest gap of the
 * finest time field matching more than one value (a field with one value fires once per unit of
 * the next coarser one). It assumes the coarser fields allow neighbouring units, so it can only
 * under-estimate.
 */
export function shortestCronIntervalSeconds(cron: string): number {
  const fields = temporalCronExpression(cron).split(" ");
  const [seconds, minutes, hours] = fields.length === 7 ? fields : ["0", ...fields];
  const units: Array<[text: string, field: CronField, unitSeconds: number]> = [
    [seconds!, SECOND, 1],
    [minutes!, FIELDS[0]!, 60],
    [hours!, FIELDS[1]!, 3_600],
  ];
  for (const [text, field, unitSeconds] of units) {
    const gap = shortestGap(cronFieldValues(text, field), field.max - field.min + 1);
    if (gap !== undefined) return gap * unitSeconds;
  }
  return 86_400;
}

/**
 * Refuses a step larger than its field's range. Temporal keeps a step's low 32 bits (2^32 reads as
 * 0, treated as 1: every unit), so such a step, which the interval checks read as "once", could
 * fire far more often. Checked on requests only: a stored cron with a merely oversized step
 * (a 90-minute step, which Temporal runs hourly) was accepted by an earlier release and keeps working.
 */
export function assertCronStepsWithinRange(cron: string): void {
  const expression = temporalCronExpression(cron);
  const parts = expression.split(/\s+/);
  const fields = parts.length === 7 ? [SECOND, ...FIELDS] : FIELDS;
  fields.forEach((field, i) => {
    for (const part of (parts[i] ?? "").split(",")) {
      const step = part.split("/")[1];
      const span = field.max - field.min + 1;
      if (step !== undefined && Number(step) > span) throw new InvalidCronError(`${field.name}: step ${step} is larger than the field's range (at most ${span})`);
    }
  });
}

/**
 * Refuses (422 on `schedule.cron`, or `delivery`) a requested cron that Temporal would not run as
 * written, fires more often than `minIntervalMs` (each fire is a campaign run: a row, two workflows
 * and an audience query, whether or not anyone is messaged), or fires more than daily for timezone
 * delivery. Call before inserting.
 */
export function assertValidCampaignSchedule(schedule: Pick<CampaignSchedule, "cron">, minIntervalMs: number, options: { timezoneDelivery?: boolean } = {}): void {
  const refuse = (message: string, field = "schedule.cron") => new ApiError("validation_error", "The request body failed validation", { in: "body", fields: { [field]: message } });
  let intervalSeconds: number;
  try {
    assertCronStepsWithinRange(schedule.cron);
    intervalSeconds = shortestCronIntervalSeconds(schedule.cron);
  } catch (error) {
    if (!(error instanceof InvalidCronError)) throw error;
    throw refuse(error.message);
  }
  if (intervalSeconds * 1000 < minIntervalMs) {
    throw refuse(`fires as often as every ${intervalSeconds} s; a recurring campaign may fire at most once every ${minIntervalMs / 1000} s`);
  }
  // A timezone-delivery run spreads over the next 24 hours; a fire during it would be skipped
  // (overlap SKIP) while next_run_at still advertised it.
  if (options.timezoneDelivery && intervalSeconds < 86_400) {
    throw refuse(`timezone delivery spreads each run over 24 hours, so its schedule may fire at most once a day; this cron fires as often as every ${intervalSeconds} s`, "delivery");
  }
}

/**
 * Refuses an `end_at` that has passed (422 naming `schedule.end_at`): such a schedule never fires
 * and its campaign would stay in progress with nothing to run. (end_at after start_at is checked by
 * the body schema; this one depends on the time, so it is checked when a campaign is created, not
 * when an Idempotency-Key replay answers one that was accepted earlier.)
 */
export function assertScheduleEndsLater(schedule: Pick<CampaignSchedule, "end_at">, now: Date): void {
  if (schedule.end_at === undefined || new Date(schedule.end_at).getTime() > now.getTime()) return;
  throw new ApiError("validation_error", "The request body failed validation", { in: "body", fields: { "schedule.end_at": "must be in the future" } });
}

// ---------------------------------------------------------------------------------- schedule

/** The Temporal Schedule of a recurring campaign. */
export function campaignScheduleOptions(
  deps: Deps,
  campaign: Pick<CampaignRow, "id" | "application_id" | "name"> & { schedule: CampaignSchedule },
  paused: boolean,
): ScheduleOptions {
  const { cron, timezone, start_at, end_at } = campaign.schedule;
  const searchAttributes = [
    { key: CampaignIdKey, value: campaign.id },
    { key: ApplicationIdKey, value: campaign.application_id },
  ];
  return {
    scheduleId: campaignScheduleId(campaign.id),
    spec: {
      cronExpressions: [temporalCronExpression(cron)],
      // The runtime's spelling: the API accepts "asia/seoul" (Intl does), Temporal's Go tzdata lookup
      // is case-sensitive. A zone this runtime no longer knows goes as stored, for Temporal to judge.
      timezone: runtimeTimeZoneName(timezone || "UTC") ?? timezone,
      ...(start_at ? { startAt: new Date(start_at) } : {}),
      ...(end_at ? { endAt: new Date(end_at) } : {}),
    },
    action: {
      type: "startWorkflow",
      workflowType: campaignRunWorkflow,
      taskQueue: deps.config.TEMPORAL_TASK_QUEUE,
      workflowId: campaignRunWorkflowIdPrefix(campaign.id),
      args: [{ campaignId: campaign.id }],
      typedSearchAttributes: searchAttributes,
    },
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: CAMPAIGN_CATCHUP_WINDOW_MS },
    typedSearchAttributes: searchAttributes,
    state: { paused, note: paused ? PAUSED_NOTE : `Recurring campaign ${campaign.name}`.slice(0, 200) },
  };
}

const PAUSED_NOTE = "Paused through the API (POST /campaigns/:id/pause)";
/** Notes of a schedule set back to its campaign's status (pause and resume go through the API). */
const ALIGNED_PAUSED_NOTE = "Paused: the campaign is paused (pause and resume it through the API; a change here is set back)";
const ALIGNED_RUNNING_NOTE = "Running: the campaign runs (pause and resume it through the API; a change here is set back)";

/**
 * Temporal's refusal as the API's error: an invalid spec (Temporal throws TypeError) is the
 * caller's 422, anything else (unreachable, timeout) is a 503 worth retrying.
 */
function scheduleError(error: unknown, campaignId: string): ApiError {
  // InvalidCronError: a row written before (or around) the API's cron check.
  if (error instanceof TypeError || error instanceof InvalidCronError) return new ApiError("validation_error", "Temporal refused the schedule", { in: "body", fields: { schedule: error.message } });
  return new ApiError("service_unavailable", "Temporal could not create the campaign's schedule", { campaign_id: campaignId, dependency: "temporal", reason: error instanceof Error ? error.message : String(error) });
}

/**
 * Why Temporal refused a recurring campaign's schedule, when `error` (from ensureCampaignSchedule)
 * is such a refusal — retrying never helps; null for anything else (unreachable, timeout).
 */
export function refusedScheduleReason(error: unknown): string | null {
  if (!(error instanceof ApiError) || error.code !== "validation_error") return null;
  const fields = (error.details.fields ?? {}) as Record<string, unknown>;
  return Object.values(fields).map(String).join("; ") || error.message;
}

/**
 * Makes the Temporal Schedule of a recurring campaign match PostgreSQL (idempotent, so the API, an
 * Idempotency-Key replay and the reconciler can all call it): created (paused if the campaign is
 * paused) while the campaign is running or paused, pause state aligned if it exists, deleted once
 * the campaign has ended. Not recurring, or gone: nothing to do. Throws ApiError 422/503.
 */
export async function ensureCampaignSchedule(deps: Deps, campaign: Pick<CampaignRow, "id">): Promise<void> {
  // Re-read: callers hold a row that may be stale (a replay of a since-cancelled campaign must not revive it).
  const row = await deps
    .db("message_campaigns")
    .where("id", campaign.id)
    .first<Pick<CampaignRow, "id" | "application_id" | "name" | "status" | "schedule"> | undefined>("id", "application_id", "name", "status", "schedule");
  if (!row?.schedule) return;
  if (ENDED_CAMPAIGN_STATUSES.includes(row.status)) {
    await deleteCampaignSchedule(deps, row.id);
    return;
  }
  if (row.status !== "running" && row.status !== "paused") return;
  const paused = row.status === "paused";
  // Built before the create's try: a TypeError from our own code is a bug to surface, not Temporal
  // refusing the spec; a cron the API never checked (a row older than the check) is a refusal.
  let options: ScheduleOptions;
  try {
    options = campaignScheduleOptions(deps, { ...row, schedule: row.schedule }, paused);
  } catch (error) {
    if (error instanceof InvalidCronError) throw scheduleError(error, row.id);
    throw error;
  }
  try {
    await deps.temporal.schedule.create(options);
    return;
  } catch (error) {
    if (!(error instanceof ScheduleAlreadyRunning)) throw scheduleError(error, row.id);
  }
  try {
    const handle = deps.temporal.schedule.getHandle(campaignScheduleId(row.id));
    const described = await handle.describe();
    // Also an operator's pause or unpause in the Temporal UI is set back: the campaign's status decides.
    if (described.state.paused !== paused) await (paused ? handle.pause(ALIGNED_PAUSED_NOTE) : handle.unpause(ALIGNED_RUNNING_NOTE));
  } catch (error) {
    throw scheduleError(error, row.id);
  }
}

/**
 * Pauses or unpauses a recurring campaign's schedule after the API changed its status. Best effort:
 * PostgreSQL already answers the truth — a fire of a paused campaign is skipped by its run — and the
 * reconciler aligns the schedule later (ensureCampaignSchedule).
 */
export async function setCampaignSchedulePaused(deps: Deps, campaignId: string, paused: boolean): Promise<void> {
  try {
    const handle = deps.temporal.schedule.getHandle(campaignScheduleId(campaignId));
    await withinApiDeadline(deps, () => (paused ? handle.pause(PAUSED_NOTE) : handle.unpause("Resumed through the API (POST /campaigns/:id/resume)")));
  } catch (error) {
    deps.logger.warn({ err: error, campaign_id: campaignId, paused }, "could not change the campaign schedule's pause state; the reconciler will align it");
  }
}

/**
 * The workflow id of the schedule's run still open in Temporal, or null (none, or no schedule).
 * A run's row turns completed in its last activity, a moment before its workflow closes; a trigger
 * in that moment would be skipped silently by the overlap policy.
 */
export async function openScheduleRun(deps: Deps, campaignId: string): Promise<string | null> {
  try {
    const described = await withinApiDeadline(deps, () => deps.temporal.schedule.getHandle(campaignScheduleId(campaignId)).describe());
    return described.info.runningActions[0]?.workflow.workflowId ?? null;
  } catch (error) {
    if (error instanceof ScheduleNotFoundError) return null;
    throw scheduleError(error, campaignId);
  }
}

/**
 * Fires a run of a recurring campaign now, besides its cron (POST /campaigns/:id/execute): the
 * schedule's own trigger, so the run looks like any other fire in the Temporal UI and its overlap
 * policy (skip) still guards against two runs at once. A schedule the reconciler has not
 * (re)created yet is created first. Throws ApiError 503 when Temporal cannot take it.
 */
export async function triggerCampaignRun(deps: Deps, campaign: Pick<CampaignRow, "id">): Promise<void> {
  // An API request: each call within the API's deadline, not the SDK's ~20 s of retries.
  const trigger = () => withinApiDeadline(deps, () => deps.temporal.schedule.getHandle(campaignScheduleId(campaign.id)).trigger(ScheduleOverlapPolicy.SKIP));
  try {
    await trigger();
  } catch (error) {
    if (!(error instanceof ScheduleNotFoundError)) throw scheduleError(error, campaign.id);
    await withinApiDeadline(deps, () => ensureCampaignSchedule(deps, campaign));
    try {
      await trigger();
    } catch (retryError) {
      throw scheduleError(retryError, campaign.id);
    }
  }
}

/**
 * Deletes a recurring campaign's schedule (already gone is fine). Runs already started keep going
 * and keep their history. Best effort: a schedule left behind fires into a run that sees the ended
 * campaign, skips, and deletes it then; the reconciler deletes it otherwise (a paused one never
 * fires), see deleteLeftoverCampaignSchedules.
 */
export async function deleteCampaignSchedule(deps: Deps, campaignId: string): Promise<void> {
  try {
    await withinApiDeadline(deps, () => deleteScheduleIfPresent(deps, campaignId));
  } catch (error) {
    deps.logger.warn({ err: error, campaign_id: campaignId }, "could not delete the campaign schedule; its next fire will");
  }
}

/** Deletes a campaign's schedule; answers false when it was already gone. Other failures throw. */
async function deleteScheduleIfPresent(deps: Deps, campaignId: string): Promise<boolean> {
  try {
    await deps.temporal.schedule.getHandle(campaignScheduleId(campaignId)).delete();
    return true;
  } catch (error) {
    if (error instanceof ScheduleNotFoundError) return false;
    throw error;
  }
}

/** What a pass of {@link deleteLeftoverCampaignSchedules} did. */
export interface LeftoverScheduleSweep {
  checked: number;
  deleted: number;
  failed: number;
}

const CAMPAIGN_SCHEDULE_ID = /^campaign-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/;

/**
 * Deletes campaign schedules whose campaign has ended or no longer exists. Deleting a schedule is
 * best effort where the campaign ends (Temporal may be unreachable then), and a schedule left
 * behind was only cleaned up by its next fire — which a paused schedule never has, so it stayed in
 * the Temporal UI for good. The campaign row is written before its schedule is created, so a
 * schedule without a row is a leftover too (a refused create whose schedule delete failed).
 */
export async function deleteLeftoverCampaignSchedules(deps: Deps, options: { limit: number; applicationId?: string }): Promise<LeftoverScheduleSweep> {
  const sweep: LeftoverScheduleSweep = { checked: 0, deleted: 0, failed: 0 };
  const query = options.applicationId ? `${ApplicationIdKey.name} = "${options.applicationId}"` : undefined;
  // Every schedule is looked at (one per active recurring campaign, so few), `limit` rows at a time.
  let chunk: string[] = [];
  const settle = async (): Promise<void> => {
    const rows = (await deps.db("message_campaigns").whereIn("id", chunk).select("id", "status")) as Array<Pick<CampaignRow, "id" | "status">>;
    const statusById = new Map(rows.map((row) => [row.id, row.status]));
    for (const campaignId of chunk) {
      sweep.checked += 1;
      const status = statusById.get(campaignId);
      if (status !== undefined && !ENDED_CAMPAIGN_STATUSES.includes(status)) continue;
      try {
        if (await deleteScheduleIfPresent(deps, campaignId)) sweep.deleted += 1;
      } catch (error) {
        sweep.failed += 1;
        deps.logger.error({ err: error, campaign_id: campaignId }, "could not delete the schedule of an ended campaign; a later pass tries again");
      }
    }
    chunk = [];
  };
  for await (const schedule of deps.temporal.schedule.list({ pageSize: Math.min(Math.max(options.limit, 1), 1_000), ...(query ? { query } : {}) })) {
    const match = CAMPAIGN_SCHEDULE_ID.exec(schedule.scheduleId);
    if (match) chunk.push(match[1]!);
    if (chunk.length >= options.limit) await settle();
  }
  if (chunk.length > 0) await settle();
  if (sweep.deleted > 0) deps.logger.warn({ count: sweep.deleted }, "reconciler deleted schedules of ended campaigns");
  return sweep;
}

/**
 * Undoes the insert of a recurring campaign whose schedule Temporal refused (422: no retry can
 * help), so the create leaves nothing behind and may be corrected and sent again, also with the
 * same Idempotency-Key. (A schedule Temporal could not take because it was unreachable is not
 * this: the campaign stays accepted and the reconciler creates the schedule.)
 */
export async function discardUnscheduledCampaign(deps: Deps, campaign: Pick<CampaignRow, "id" | "application_id">): Promise<void> {
  try {
    await deps.db("message_campaigns").where({ id: campaign.id, application_id: campaign.application_id }).delete();
  } catch (error) {
    deps.logger.error({ err: error, campaign_id: campaign.id }, "could not remove a recurring campaign without schedule; the reconciler will create its schedule");
    return;
  }
  await deleteCampaignSchedule(deps, campaign.id);
}

/**
 * Refuses a just-created recurring campaign whose schedule has no future fire time — a cron that
 * matches no date (`0 9 31 2 *`), or none between start_at and end_at — with 422 naming the field,
 * and undoes the create so nothing is left behind. Temporal computes the fire times (the same
 * calendar rules that will fire it, e.g. day-of-month AND day-of-week); when it cannot be asked
 * (unreachable) the campaign stays accepted, and if it never fires the reconciler completes it
 * (completeEndedRecurringCampaign). Only for the request that inserted the campaign.
 */
export async function assertCampaignScheduleFires(deps: Deps, campaign: Pick<CampaignRow, "id" | "application_id"> & { schedule: CampaignSchedule }): Promise<void> {
  let nextFires: Date[];
  try {
    nextFires = (await withinApiDeadline(deps, () => deps.temporal.schedule.getHandle(campaignScheduleId(campaign.id)).describe())).info.nextActionTimes;
  } catch (error) {
    deps.logger.warn({ err: error, campaign_id: campaign.id }, "could not read the new schedule's fire times; the reconciler completes the campaign if it never fires");
    return;
  }
  if (nextFires.length > 0) return;
  await discardUnscheduledCampaign(deps, campaign);
  const fields = campaign.schedule.end_at
    ? { "schedule.end_at": "schedule.cron has no fire time before end_at" }
    : campaign.schedule.start_at
      ? { "schedule.start_at": "schedule.cron has no fire time Temporal can find from start_at (a date that does not exist, or a start too far ahead)" }
      : { "schedule.cron": "matches no date (for example 31 February): it would never fire" };
  throw new ApiError("validation_error", "The request body failed validation", { in: "body", fields });
}

/**
 * Ends a recurring campaign whose schedule will never fire again (end_at passed, or a spec that
 * matches no date left) once no run of it is active: `completed` with completed_at, and its
 * schedule deleted (an ended campaign has none). Otherwise it would stay in progress for ever with
 * next_run_at null. Called when a run finishes (`finishingRunKey`: that run's schedule action,
 * still open while it reports) and by the reconciler for the parents whose last fire was skipped
 * or that never fired. Temporal decides "never again" (its nextActionTimes, empty also while
 * paused when no fire is left); a fire still being turned into a run is a running action, and a
 * run row still active blocks the conditional update. Answers whether it completed the campaign.
 */
export async function completeEndedRecurringCampaign(deps: Deps, campaignId: string, finishingRunKey?: string): Promise<boolean> {
  const row = await deps
    .db("message_campaigns")
    .where("id", campaignId)
    .first<Pick<CampaignRow, "id" | "status" | "schedule" | "parent_campaign_id"> | undefined>("id", "status", "schedule", "parent_campaign_id");
  if (!row?.schedule || row.parent_campaign_id !== null || (row.status !== "running" && row.status !== "paused")) return false;
  let described;
  try {
    described = await deps.temporal.schedule.getHandle(campaignScheduleId(campaignId)).describe();
  } catch (error) {
    // No schedule to ask (it is created again by the reconciler's ensureCampaignSchedule first).
    if (error instanceof ScheduleNotFoundError) return false;
    throw error;
  }
  if (described.info.nextActionTimes.length > 0) return false;
  // Temporal refreshes runningActions only when it next starts something or is told to, so after
  // the last fire a finished run can still be listed here: ask each listed run itself.
  for (const action of described.info.runningActions) {
    if (action.workflow.workflowId === finishingRunKey) continue;
    if (await isRunning(deps, action.workflow.workflowId)) return false;
  }
  const { db } = deps;
  const updated = await db("message_campaigns")
    .where("id", campaignId)
    .whereIn("status", ["running", "paused"])
    .whereNotExists(db("message_campaigns as run").select(db.raw("1")).where("run.parent_campaign_id", campaignId).whereIn("run.status", ACTIVE_CAMPAIGN_STATUSES))
    .update({ status: "completed", completed_at: db.fn.now() }, ["id"]);
  if (updated.length === 0) return false;
  await deleteCampaignSchedule(deps, campaignId);
  return true;
}

/** Whether a schedule's run workflow (its latest run) is still running; one Temporal no longer has is not. */
async function isRunning(deps: Deps, workflowId: string): Promise<boolean> {
  try {
    return (await deps.temporal.workflow.getHandle(workflowId).describe()).status.name === "RUNNING";
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) return false;
    throw error;
  }
}

/** What GET /campaigns/:id shows of the schedule: the next fire (null when paused, ended or unknown). */
export async function nextCampaignRunAt(deps: Deps, campaign: Pick<CampaignRow, "id" | "status">): Promise<Date | null> {
  if (campaign.status !== "running") return null;
  try {
    const described = await withinApiDeadline(deps, () => deps.temporal.schedule.getHandle(campaignScheduleId(campaign.id)).describe());
    return described.state.paused ? null : (described.info.nextActionTimes[0] ?? null);
  } catch (error) {
    // The campaign itself is answered from PostgreSQL; Temporal being unreachable only hides this field.
    deps.logger.warn({ err: error, campaign_id: campaign.id }, "could not describe the campaign schedule");
    return null;
  }
}
