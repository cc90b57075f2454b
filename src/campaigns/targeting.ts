/**
 * Campaign targeting (REF-001 §6.1, SEQ-002 §2.3): validates `targeting_criteria` and compiles it
 * into a knex where-builder over `subscriptions as s`. Pure: it only adds clauses to a builder, so
 * the same compiled filter serves the estimate, the audience pager and the batch insert.
 */
import type { Knex } from "knex";
import { z } from "zod";
import { ApiError } from "../http/errors";
import { PUSH_SUBSCRIPTION_TYPES } from "../providers/types";
import { CountryCode, ExternalUserId, LANGUAGE_TAG, MAX_TAGS, TagKey, TagValue } from "../subscriptions/schemas";
import type { AudienceGroup } from "./repository";

// Not apiInstant: stored campaigns are parsed with this schema too, and an earlier release stored
// what z.iso.datetime accepts (a client's zero time, 0001-01-01T00:00:00Z, among them).
const isoDate = z.iso.datetime({ offset: true });

/** Tag values in one criteria in all; each is a bound parameter, and PostgreSQL takes at most 65,535. */
export const MAX_TARGETING_TAG_VALUES = 1_000;

/** The accepted criteria; unknown keys are refused so a typo never widens an audience silently. */
export const TargetingCriteriaSchema = z
  .strictObject({
    tags: z
      .union([
        z
          .record(TagKey, z.union([TagValue, z.array(TagValue).min(1).max(100)]))
          .refine((tags) => Object.keys(tags).length <= MAX_TAGS, `at most ${MAX_TAGS} tag keys (a subscription has at most ${MAX_TAGS} tags)`)
          .refine(
            (tags) => Object.values(tags).reduce((n, v) => n + (Array.isArray(v) ? v.length : 1), 0) <= MAX_TARGETING_TAG_VALUES,
            `at most ${MAX_TARGETING_TAG_VALUES} tag values in all`,
          ),
        // SEQ-002 §2.3's form: the subscription has every one of these tags, whatever their values.
        z.array(TagKey).min(1).max(MAX_TAGS),
      ])
      .optional()
      .describe("key → value, or key → list (any of); numbers and booleans match their string form; or a list of keys the subscription must all have (any value)"),
    // Tags and countries parse as subscriptions store them, so a criterion matches what is stored.
    countries: z
      .array(CountryCode)
      .min(1)
      .max(300)
      .optional(),
    languages: z
      .array(z.string().trim().regex(LANGUAGE_TAG, "must be a language tag like ko or en-US"))
      .min(1)
      .max(300)
      .optional()
      .describe("case-insensitive; a bare language (en) also matches its regional forms (en-US, en_GB)"),
    subscription_types: z.array(z.enum(PUSH_SUBSCRIPTION_TYPES)).min(1).max(PUSH_SUBSCRIPTION_TYPES.length).optional(),
    last_active_after: isoDate.optional(),
    last_active_before: isoDate.optional(),
    // Trimmed like every other endpoint's external id, so " u1 " reaches the user "u1".
    external_ids: z.array(ExternalUserId).min(1).max(10_000).optional(),
    test_type: z
      .union([z.number().int().min(0).max(2), z.null()])
      .optional()
      .describe("null or 0 = production devices only (registered with 0 or without a test_type); 1/2 = that test type only"),
  })
  .superRefine((criteria, ctx) => {
    const { last_active_after: after, last_active_before: before } = criteria;
    if (after && before && Date.parse(after) >= Date.parse(before)) {
      ctx.addIssue({ code: "custom", path: ["last_active_before"], message: "must be after last_active_after (this range matches nobody)" });
    }
  });

/** Validated targeting criteria. */
export type TargetingCriteria = z.output<typeof TargetingCriteriaSchema>;

/**
 * Parses criteria from a request, answering `invalid_targeting_criteria` (400) with the offending
 * field named, instead of the generic validation error, as REF-001 §8 asks for campaigns.
 */
export function parseTargetingCriteria(input: unknown): TargetingCriteria {
  // Absent means everyone; an explicit null is refused rather than read as absent, so a client
  // that serialises an unset variable does not send to the whole audience by accident.
  if (input === null) {
    throw new ApiError("invalid_targeting_criteria", "targeting_criteria: must be an object (omit it to target every subscriber)", { field: "targeting_criteria" });
  }
  const parsed = TargetingCriteriaSchema.safeParse(input ?? {});
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const keys = issue.code === "unrecognized_keys" ? issue.keys : [];
  const field = ["targeting_criteria", ...issue.path.map(String), ...keys.slice(0, 1)].join(".");
  throw new ApiError("invalid_targeting_criteria", `${field}: ${issue.message}`, {
    field,
    issues: parsed.error.issues.map((i) => ({ path: ["targeting_criteria", ...i.path.map(String)].join("."), message: i.message })),
  });
}

/**
 * {@link parseTargetingCriteria} for criteria a client sends: an empty tag map is refused like
 * every other empty criterion (a UI with nothing selected must not target everyone). Stored
 * campaigns are read with the plain parse, so one created before this rule still runs.
 */
export function parseRequestedTargetingCriteria(input: unknown): TargetingCriteria {
  const criteria = parseTargetingCriteria(input);
  if (criteria.tags !== undefined && !Array.isArray(criteria.tags) && Object.keys(criteria.tags).length === 0) {
    throw new ApiError("invalid_targeting_criteria", "targeting_criteria.tags: give at least one tag (omit tags to target every subscriber)", {
      field: "targeting_criteria.tags",
      issues: [{ path: "targeting_criteria.tags", message: "give at least one tag" }],
    });
  }
  return criteria;
}

/**
 * Adds the audience filter to a query over `subscriptions as s`: the tenant, deliverable and not
 * archived (so the partial `subscriptions_audience_idx` serves the keyset pages in id order), push
 * types, then each criterion.
 * Tags use jsonb containment so the GIN `jsonb_path_ops` index serves them; a list is an OR of
 * containments. External ids are a semi-join on users (no row multiplication).
 */
export function applyTargeting(query: Knex.QueryBuilder, db: Knex, applicationId: string, criteria: TargetingCriteria): Knex.QueryBuilder {
  query
    .where("s.application_id", applicationId)
    .where("s.subscription_status", ">", 0)
    .whereNull("s.archived_at")
    .whereIn("s.subscription_type", criteria.subscription_types ?? [...PUSH_SUBSCRIPTION_TYPES]);
  if (Array.isArray(criteria.tags)) {
    // Key presence is not served by the jsonb_path_ops GIN index: a filter on the audience scan.
    query.whereRaw("jsonb_exists_all(s.tags, ?::text[])", [criteria.tags]);
  } else {
    for (const [key, value] of Object.entries(criteria.tags ?? {})) {
      const values = Array.isArray(value) ? value : [value];
      query.where((any) => {
        for (const v of values) any.orWhereRaw("s.tags @> ?::jsonb", [JSON.stringify({ [key]: v })]);
      });
    }
  }
  if (criteria.countries) query.whereIn("s.country", criteria.countries);
  if (criteria.languages) {
    // Stored as the SDK sent it (ko, ko-KR, en_US): compared lower-case with `_` read as `-`.
    const stored = "replace(lower(s.language), '_', '-')";
    const wanted = criteria.languages.map((tag) => tag.toLowerCase().replaceAll("_", "-"));
    query.where((any) => {
      any.whereRaw(`${stored} = any(?::text[])`, [wanted]);
      const bare = wanted.filter((tag) => !tag.includes("-"));
      if (bare.length > 0) any.orWhereRaw(`split_part(${stored}, '-', 1) = any(?::text[])`, [bare]);
    });
  }
  if (criteria.last_active_after) query.where("s.last_active_at", ">=", new Date(criteria.last_active_after));
  if (criteria.last_active_before) query.where("s.last_active_at", "<", new Date(criteria.last_active_before));
  if (criteria.external_ids) {
    query.whereIn("s.user_id", db("users as u").select("u.id").where("u.application_id", applicationId).whereIn("u.external_id", criteria.external_ids));
  }
  // The SDK registers production builds with test_type 0 (REF-001 §2.1); older ones sent none.
  if (criteria.test_type === null || criteria.test_type === 0) query.whereRaw("coalesce(s.test_type, 0) = 0");
  else if (criteria.test_type !== undefined) query.where("s.test_type", criteria.test_type);
  return query;
}

/** Limits an audience query to one timezone delivery group. */
export function applyAudienceGroup(query: Knex.QueryBuilder, group: AudienceGroup | undefined): Knex.QueryBuilder {
  if (!group) return query;
  return query.where((inGroup) => {
    if (group.timezones.length > 0) inGroup.orWhereIn("s.timezone", group.timezones);
    if (group.includesUnset) inGroup.orWhereNull("s.timezone");
    // An empty group matches nobody rather than everybody.
    if (group.timezones.length === 0 && !group.includesUnset) inGroup.whereRaw("false");
  });
}

/** The audience query: matching subscriptions (in one delivery group if given), nothing selected yet. */
export function audienceQuery(db: Knex, applicationId: string, criteria: TargetingCriteria, group?: AudienceGroup): Knex.QueryBuilder {
  return applyAudienceGroup(applyTargeting(db("subscriptions as s"), db, applicationId, criteria), group);
}
