import { describe, test } from "node:test";
import assert from "node:assert/strict";
import knexFactory from "knex";
import { ApiError } from "../http/errors";
import { audienceQuery, parseTargetingCriteria } from "./targeting";

// A connection-less knex: compiles SQL only.
const db = knexFactory({ client: "pg" });
const APP = "00000000-0000-7000-8000-000000000001";

function compile(criteria: unknown) {
  const { sql, bindings } = audienceQuery(db, APP, parseTargetingCriteria(criteria)).select("s.id").toSQL();
  return { sql, bindings: bindings as unknown[] };
}

const BASE = `select "s"."id" from "subscriptions" as "s" where "s"."application_id" = ? and "s"."subscription_status" > ? and "s"."archived_at" is null and "s"."subscription_type" in (?, ?)`;

describe("targeting compiler", () => {
  const cases: Array<{ name: string; criteria: unknown; sql: string; bindings: unknown[] }> = [
    { name: "empty criteria: tenant, deliverable, not archived, push types", criteria: {}, sql: BASE, bindings: [APP, 0, "iOSPush", "AndroidPush"] },
    {
      name: "tag value is one jsonb containment (GIN jsonb_path_ops)",
      criteria: { tags: { premium_user: "true" } },
      sql: `${BASE} and (s.tags @> ?::jsonb)`,
      bindings: [APP, 0, "iOSPush", "AndroidPush", '{"premium_user":"true"}'],
    },
    {
      name: "tag list is any-of: OR of containments, AND across keys",
      criteria: { tags: { level: ["silver", "gold"], vip: "1" } },
      sql: `${BASE} and (s.tags @> ?::jsonb or s.tags @> ?::jsonb) and (s.tags @> ?::jsonb)`,
      bindings: [APP, 0, "iOSPush", "AndroidPush", '{"level":"silver"}', '{"level":"gold"}', '{"vip":"1"}'],
    },
    {
      name: "countries (upper-cased like stored codes), languages (case-insensitive, bare = any region) and subscription_types",
      criteria: { countries: ["kr", "US"], languages: ["ko", "en_US"], subscription_types: ["AndroidPush"] },
      sql:
        BASE.replace(`in (?, ?)`, `in (?)`) +
        ` and "s"."country" in (?, ?) and (replace(lower(s.language), '_', '-') = any(?::text[]) or split_part(replace(lower(s.language), '_', '-'), '-', 1) = any(?::text[]))`,
      bindings: [APP, 0, "AndroidPush", "KR", "US", ["ko", "en-us"], ["ko"]],
    },
    {
      name: "regional languages only: exact (case-insensitive) matches, no prefix clause",
      criteria: { languages: ["pt-BR"] },
      sql: `${BASE} and (replace(lower(s.language), '_', '-') = any(?::text[]))`,
      bindings: [APP, 0, "iOSPush", "AndroidPush", ["pt-br"]],
    },
    {
      name: "a list of tag keys (SEQ-002 §2.3): the subscription has all of them, any value",
      criteria: { tags: ["active_user", "has_purchased"] },
      sql: `${BASE} and jsonb_exists_all(s.tags, ?::text[])`,
      bindings: [APP, 0, "iOSPush", "AndroidPush", ["active_user", "has_purchased"]],
    },
    {
      name: "tag values that are numbers or booleans match their stored string form",
      criteria: { tags: { vip: true, level: [3, "4"] } },
      sql: `${BASE} and (s.tags @> ?::jsonb) and (s.tags @> ?::jsonb or s.tags @> ?::jsonb)`,
      bindings: [APP, 0, "iOSPush", "AndroidPush", '{"vip":"true"}', '{"level":"3"}', '{"level":"4"}'],
    },
    {
      name: "last_active window",
      criteria: { last_active_after: "2025-03-01T00:00:00Z", last_active_before: "2025-04-01T00:00:00Z" },
      sql: `${BASE} and "s"."last_active_at" >= ? and "s"."last_active_at" < ?`,
      bindings: [APP, 0, "iOSPush", "AndroidPush", new Date("2025-03-01T00:00:00Z"), new Date("2025-04-01T00:00:00Z")],
    },
    {
      name: "external_ids: semi-join on the tenant's users",
      // Trimmed like every other endpoint's external id.
      criteria: { external_ids: ["u1", " u2 "] },
      sql: `${BASE} and "s"."user_id" in (select "u"."id" from "users" as "u" where "u"."application_id" = ? and "u"."external_id" in (?, ?))`,
      bindings: [APP, 0, "iOSPush", "AndroidPush", APP, "u1", "u2"],
    },
    { name: "test_type null = production only (registered with 0 or none)", criteria: { test_type: null }, sql: `${BASE} and coalesce(s.test_type, 0) = 0`, bindings: [APP, 0, "iOSPush", "AndroidPush"] },
    { name: "test_type 0 = production only, the same", criteria: { test_type: 0 }, sql: `${BASE} and coalesce(s.test_type, 0) = 0`, bindings: [APP, 0, "iOSPush", "AndroidPush"] },
    { name: "test_type 1", criteria: { test_type: 1 }, sql: `${BASE} and "s"."test_type" = ?`, bindings: [APP, 0, "iOSPush", "AndroidPush", 1] },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const compiled = compile(c.criteria);
      assert.equal(compiled.sql, c.sql);
      assert.deepEqual(compiled.bindings, c.bindings);
    });
  }

  const invalid: Array<{ criteria: unknown; field: string }> = [
    { criteria: { segments: ["x"] }, field: "targeting_criteria.segments" },
    { criteria: { countries: "KR" }, field: "targeting_criteria.countries" },
    { criteria: { tags: { level: [] } }, field: "targeting_criteria.tags.level" },
    { criteria: { tags: [] }, field: "targeting_criteria.tags" },
    { criteria: { subscription_types: ["Email"] }, field: "targeting_criteria.subscription_types.0" },
    { criteria: { last_active_after: "yesterday" }, field: "targeting_criteria.last_active_after" },
    { criteria: "all", field: "targeting_criteria" },
    // null is not "absent": a client serialising an unset variable must not reach everyone.
    { criteria: null, field: "targeting_criteria" },
    { criteria: { subscription_types: Array.from({ length: 3 }, () => "iOSPush") }, field: "targeting_criteria.subscription_types" },
    { criteria: { countries: ["KOREA"] }, field: "targeting_criteria.countries.0" },
    { criteria: { languages: ["korean language"] }, field: "targeting_criteria.languages.0" },
    { criteria: { tags: { note: "x".repeat(257) } }, field: "targeting_criteria.tags.note" },
    // Each tag value is a bound parameter: a criteria PostgreSQL could not run is refused up front.
    { criteria: { tags: Object.fromEntries(Array.from({ length: 101 }, (_, i) => [`k${i}`, "v"])) }, field: "targeting_criteria.tags" },
    { criteria: { tags: Object.fromEntries(Array.from({ length: 11 }, (_, i) => [`k${i}`, Array.from({ length: 100 }, (_, j) => `v${j}`)])) }, field: "targeting_criteria.tags" },
    { criteria: { last_active_after: "2025-04-01T00:00:00Z", last_active_before: "2025-03-01T00:00:00Z" }, field: "targeting_criteria.last_active_before" },
    { criteria: { last_active_after: "2025-04-01T00:00:00Z", last_active_before: "2025-04-01T00:00:00Z" }, field: "targeting_criteria.last_active_before" },
  ];
  for (const c of invalid) {
    test(`refuses ${JSON.stringify(c.criteria)} naming ${c.field}`, () => {
      assert.throws(
        () => parseTargetingCriteria(c.criteria),
        (error: unknown) => error instanceof ApiError && error.code === "invalid_targeting_criteria" && error.status === 400 && error.details.field === c.field,
      );
    });
  }
});

describe("timezone delivery groups", () => {
  const cases: Array<{ name: string; group: { timezones: string[]; includesUnset: boolean }; where: string; bindings: unknown[] }> = [
    { name: "zones only", group: { timezones: ["Asia/Seoul", "Asia/Tokyo"], includesUnset: false }, where: ` and ("s"."timezone" in (?, ?))`, bindings: ["Asia/Seoul", "Asia/Tokyo"] },
    { name: "zones and the devices without one", group: { timezones: ["UTC"], includesUnset: true }, where: ` and ("s"."timezone" in (?) or "s"."timezone" is null)`, bindings: ["UTC"] },
    { name: "only the devices without one", group: { timezones: [], includesUnset: true }, where: ` and ("s"."timezone" is null)`, bindings: [] },
    { name: "an empty group matches nobody, not everybody", group: { timezones: [], includesUnset: false }, where: ` and (false)`, bindings: [] },
  ];
  for (const { name, group, where, bindings } of cases) {
    test(name, () => {
      const { sql, bindings: bound } = audienceQuery(db, APP, parseTargetingCriteria({}), group).select("s.id").toSQL();
      assert.equal(sql, BASE + where);
      assert.deepEqual(bound, [APP, 0, "iOSPush", "AndroidPush", ...bindings]);
    });
  }
});
