/**
 * Campaign targeting (REF-001 §6.1, SEQ-002 §2.3): validates `targeting_criteria` and compiles it
 * into a knex where-builder over `subscriptions as s`. Pure: it only adds clauses to a builder, so
 * the same compiled filter serves the estimate, the audience pager and the batch insert.
 */
import type { Knex } from "knex";
import { z } from "zod";
import { ApiError } from "../http/errors";
import { PUSH_SUBSCRIPTION_TYPES } from "../providers/types";
import { ExternalUserId } from "../subscriptions/schemas";
import type { AudienceGroup } from "./repository";

const tagValue = z.union([z.string().max(255), z.array(z.string().max(255)).min(1).max(100)]);
const isoDate = z.iso.datetime({ offset: true });

/** The accepted criteria; unknown keys are refused so a typo never widens an audience silently. */
export const TargetingCriteriaSchema = z.strictObject({
  tags: z.record(z.string().min(1).max(128), tagValue).optional().describe("key → value, or key → list (any of)"),
  countries: z.array(z.string().min(2).max(8)).min(1).max(300).optional(),
  languages: z.array(z.string().min(2).max(16)).min(1).max(300).optional(),
  subscription_types: z.array(z.enum(PUSH_SUBSCRIPTION_TYPES)).min(1).optional(),
  last_active_after: isoDate.optional(),
  last_active_before: isoDate.optional(),
  // Trimmed like every other endpoint's external id, so " u1 " reaches the user "u1".
  external_ids: z.array(ExternalUserId).min(1).max(10_000).optional(),
  test_type: z.union([z.number().int().min(0).max(2), z.null()]).optional().describe("null = production devices only; 1/2 = that test type only"),
});

/** Validated targeting criteria. */
export type TargetingCriteria = z.output<typeof TargetingCriteriaSchema>;

/**
 * Parses criteria from a request, answering `invalid_targeting_criteria` (400) with the offending
 * field named, instead of the generic validation error, as REF-001 §8 asks for campaigns.
 */
export function parseTargetingCriteria(input: unknown): TargetingCriteria {
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
  for (const [key, value] of Object.entries(criteria.tags ?? {})) {
    const values = Array.isArray(value) ? value : [value];
    query.where((any) => {
      for (const v of values) any.orWhereRaw("s.tags @> ?::jsonb", [JSON.stringify({ [key]: v })]);
    });
  }
  if (criteria.countries) query.whereIn("s.country", criteria.countries);
  if (criteria.languages) query.whereIn("s.language", criteria.languages);
  if (criteria.last_active_after) query.where("s.last_active_at", ">=", new Date(criteria.last_active_after));
  if (criteria.last_active_before) query.where("s.last_active_at", "<", new Date(criteria.last_active_before));
  if (criteria.external_ids) {
    query.whereIn("s.user_id", db("users as u").select("u.id").where("u.application_id", applicationId).whereIn("u.external_id", criteria.external_ids));
  }
  if (criteria.test_type === null) query.whereNull("s.test_type");
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
