import { z } from "zod";
import { PushOptionsShape } from "../messages/push-options";
import { MESSAGE_STATUSES } from "../messages/state-machine";
import { ErrorCodeFilter } from "../messages/schemas";
import { PaginationQuery, refuseEmptyWindow } from "../http/pagination";
import { apiInstant, PG_INTEGER_MAX, uuidField } from "../http/validation";
import { API_CAMPAIGN_STATUSES } from "./repository";
import { LOCAL_TIME_PATTERN } from "./timezones";
import { TimeZoneName } from "../time-zones";

const isoDate = apiInstant;

/**
 * Furthest ahead a campaign may be scheduled. A campaign waiting for its start costs its workflow a
 * status check every few minutes; one set for year 9999 would cost that for ever, and is a typo.
 */
export const MAX_SCHEDULE_AHEAD_DAYS = 730;

const timeZone = TimeZoneName;

/** `schedule` of a recurring campaign: a Temporal Schedule fires one run per cron match. */
export const CampaignScheduleBody = z
  .strictObject({
    cron: z.string().trim().min(1).max(200).describe('cron expression, e.g. "0 9 * * MON" (an optional leading seconds field is accepted)'),
    timezone: timeZone.default("UTC").describe("the cron's timezone"),
    start_at: isoDate.optional().describe("no run before this instant"),
    end_at: isoDate.optional().describe("no run after this instant"),
  })
  .refine((s) => !s.start_at || !s.end_at || new Date(s.start_at) < new Date(s.end_at), { message: "end_at must be after start_at", path: ["end_at"] });

/** `delivery` of a campaign: each recipient at a local time in their own timezone. */
export const CampaignDeliveryBody = z.strictObject({
  mode: z.literal("timezone"),
  local_time: z.string().regex(LOCAL_TIME_PATTERN, { message: "must be HH:MM or HH:MM:SS" }),
  fallback_timezone: timeZone.optional().describe("for subscriptions without a timezone (default: the application's timezone)"),
});


/**
 * Body of `POST /campaigns` (REF-001 §6.1): a template (rendered once with `variables`) or direct
 * content, targeting, and an optional start time. `targeting_criteria` is validated separately so
 * its errors are `invalid_targeting_criteria`, as the contract asks.
 */
export const CreateCampaignBody = z
  .strictObject({
    name: z.string().trim().min(1).max(200),
    description: z.string().max(2000).optional(),
    template_id: uuidField.optional(),
    template_version: z.number().int().min(1).max(PG_INTEGER_MAX).optional().describe("pin a template version (default: current)"),
    title: z.string().optional(),
    body: z.string().optional(),
    data: z.record(z.string().min(1).max(256), z.unknown()).optional(),
    variables: z.record(z.string(), z.unknown()).optional(),
    targeting_criteria: z.unknown().optional().describe("tags, countries, languages, subscription_types, last_active_after/before, external_ids, test_type"),
    scheduled_at: isoDate
      .refine((value) => Date.parse(value) <= Date.now() + MAX_SCHEDULE_AHEAD_DAYS * 86_400_000, `must be at most ${MAX_SCHEDULE_AHEAD_DAYS} days ahead`)
      .optional()
      .describe(`absent or in the past = start now; at most ${MAX_SCHEDULE_AHEAD_DAYS} days ahead`),
    throttle_per_minute: z.number().int().min(1).max(1_000_000).optional().describe("pace batches to about this many recipients per minute"),
    schedule: CampaignScheduleBody.optional().describe("recurring campaign: one run per cron match"),
    delivery: CampaignDeliveryBody.optional().describe("timezone delivery: each recipient at local_time in their timezone"),
    ...PushOptionsShape,
  })
  .superRefine((body, ctx) => {
    const direct = body.title !== undefined || body.body !== undefined || body.data !== undefined;
    if (body.template_id && direct) ctx.addIssue({ code: "custom", path: ["template_id"], message: "give template_id or title/body/data, not both" });
    if (!body.template_id && !body.title && !body.body) ctx.addIssue({ code: "custom", path: ["body"], message: "template_id, title or body is required" });
    if (!body.template_id && body.variables) ctx.addIssue({ code: "custom", path: ["variables"], message: "variables need a template_id" });
    if (body.schedule && body.scheduled_at) ctx.addIssue({ code: "custom", path: ["scheduled_at"], message: "a recurring campaign starts by its schedule (use schedule.start_at)" });
  });

/** Body of `POST /campaigns/estimate`. */
export const EstimateBody = z.strictObject({ targeting_criteria: z.unknown().optional() });

/** Query of `GET /campaigns` (REF-001 §6.6). */
export const ListCampaignsQuery = PaginationQuery.extend({
  // REF-001's `in_progress`; `running` (the stored name, answered before) stays accepted as an alias.
  status: z.enum([...API_CAMPAIGN_STATUSES, "running"]).optional().describe("in_progress (alias: running), scheduled, paused, completed, cancelled, failed, draft"),
  from: isoDate.optional().describe("created at or after (ISO 8601)"),
  to: isoDate.optional().describe("created before (ISO 8601)"),
})
  .strict()
  .superRefine(refuseEmptyWindow);

/** Query of `GET /campaigns/:id/messages`. */
export const CampaignMessagesQuery = PaginationQuery.extend({
  status: z.enum(MESSAGE_STATUSES).optional(),
  error_code: ErrorCodeFilter.optional(),
}).strict();

/** The create answer (REF-001 §6.1). */
export const CreatedCampaign = z.object({ campaign_id: z.string(), name: z.string(), status: z.enum(API_CAMPAIGN_STATUSES), scheduled_at: z.string().nullable(), created_at: z.string() });
