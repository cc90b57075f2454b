import { z } from "zod";
import { PushOptionsShape } from "../messages/push-options";
import { PaginationQuery, PaginationSchema } from "../http/pagination";
import { PG_INTEGER_MAX, queryInteger } from "../http/validation";
import { dataEntryIssues } from "../providers/validation";
import { MAX_NESTING_DEPTH, VARIABLE_NAME_PATTERN, templateSyntaxError } from "./render";

/** DESIGN-003 channel values (the `message_templates.channel` CHECK constraint). */
export const TEMPLATE_CHANNELS = ["push", "email", "sms", "kakao_talk", "in_app"] as const;

/** Most variables one template may declare. */
export const MAX_DECLARED_VARIABLES = 100;

/**
 * Most characters of template text in a title, a body, or a data template's strings together. A
 * push renders to at most 4 KB, so this leaves room for sections; without a bound, one template
 * of a quarter megabyte of tags cost 20 ms per recipient to render and 4.6 MB of parse cache.
 */
export const MAX_TEMPLATE_SOURCE_CHARS = 8_192;

const tooLong = (chars: number) => `is ${chars} characters of template text; at most ${MAX_TEMPLATE_SOURCE_CHARS}`;

/** A mustache template string; malformed syntax is rejected here, at write time, not at send time. */
const TemplateSource = z.string().superRefine((source, ctx) => {
  // Measured before parsing: the parse is what costs.
  if (source.length > MAX_TEMPLATE_SOURCE_CHARS) {
    ctx.addIssue({ code: "custom", message: tooLong(source.length) });
    return;
  }
  const problem = templateSyntaxError(source);
  if (problem) ctx.addIssue({ code: "custom", message: problem });
});

/**
 * Additional data sent with the message; every string leaf (at any depth) is a template, other JSON
 * values pass through unchanged.
 */
const DataTemplate = z.record(z.string(), z.unknown()).superRefine((data, ctx) => {
  // Bounded recursion: a hostile body of nested arrays must not overflow the stack.
  const strings: Array<{ value: string; path: Array<string | number> }> = [];
  const walk = (value: unknown, path: Array<string | number>, depth: number): void => {
    if (depth > MAX_NESTING_DEPTH) {
      ctx.addIssue({ code: "custom", message: `nests deeper than ${MAX_NESTING_DEPTH} levels`, path });
      return;
    }
    if (typeof value === "string") {
      strings.push({ value, path });
    } else if (Array.isArray(value)) {
      value.forEach((item, i) => walk(item, [...path, i], depth + 1));
    } else if (typeof value === "object" && value !== null) {
      for (const [key, item] of Object.entries(value)) walk(item, [...path, key], depth + 1);
    }
  };
  for (const [key, value] of Object.entries(data)) walk(value, [key], 1);
  // Every string leaf is rendered for every recipient: the bound is on all of them together.
  const chars = strings.reduce((sum, { value }) => sum + value.length, 0);
  if (chars > MAX_TEMPLATE_SOURCE_CHARS) {
    ctx.addIssue({ code: "custom", message: `its strings are ${chars} characters of template text together; at most ${MAX_TEMPLATE_SOURCE_CHARS}` });
  } else {
    for (const { value, path } of strings) {
      const problem = templateSyntaxError(value);
      if (problem) ctx.addIssue({ code: "custom", message: problem, path });
    }
  }
  // Keys are not templates and non-string values are sent as they are, so what every send would
  // refuse is known now. Keys one platform reserves (aps, gcm.*) stay allowed: a template may serve
  // only the other platform, and sends check them per recipient.
  for (const found of dataEntryIssues(data)) ctx.addIssue({ code: "custom", message: found.message, path: [found.field.slice("data.".length)] });
});

/** One declared variable: `required` (default false) or a `default` used when it is missing. */
export const TemplateVariableInput = z
  .strictObject({
    name: z.string().max(100).regex(VARIABLE_NAME_PATTERN, "must be letters, digits and underscores (dots for nested names), not starting with a digit"),
    required: z.boolean().default(false),
    default: z.string().max(1000).optional(),
    description: z.string().max(500).optional(),
  })
  .refine((v) => !(v.required && v.default !== undefined), { message: "a required variable cannot have a default", path: ["default"] });

const TemplateVariables = z
  .array(TemplateVariableInput)
  .max(MAX_DECLARED_VARIABLES)
  .superRefine((variables, ctx) => {
    const seen = new Set<string>();
    variables.forEach((v, i) => {
      if (seen.has(v.name)) ctx.addIssue({ code: "custom", message: `variable ${v.name} is declared twice`, path: [i, "name"] });
      seen.add(v.name);
    });
    // A default is text: applied to `user` it leaves no object for a declared `user.name` to live
    // in, so every render without `user` would fail. Refused here, at write time, not at send time.
    variables.forEach((v, i) => {
      if (v.default === undefined) return;
      const child = variables.find((other) => other.name.startsWith(`${v.name}.`));
      if (child) ctx.addIssue({ code: "custom", message: `a variable with nested variables (${child.name}) cannot have a default`, path: [i, "default"] });
    });
  });

/**
 * Push delivery options stored with each version (literal values, not templated): the same options
 * every send endpoint accepts, so a template can carry anything a direct send can.
 */
export const TemplateOptions = z.strictObject(PushOptionsShape);

/** Options as stored in `message_template_versions.options`. */
export type TemplateOptionsValue = z.infer<typeof TemplateOptions>;

const Name = z.string().trim().min(1).max(200);
const Description = z.string().max(1000).nullable();

const hasText = (value: string | null | undefined): boolean => typeof value === "string" && value.length > 0;

/** Body of `POST /templates` (REF-001 §5.1): a title or body template is required. */
export const CreateTemplateBody = z
  .strictObject({
    name: Name,
    title_template: TemplateSource.nullable().optional(),
    body_template: TemplateSource.nullable().optional(),
    data_template: DataTemplate.optional(),
    description: Description.optional(),
    variables: TemplateVariables.optional(),
    options: TemplateOptions.optional(),
    channel: z.enum(TEMPLATE_CHANNELS).optional().describe("defaults to push"),
  })
  .refine((b) => hasText(b.title_template) || hasText(b.body_template), {
    message: "title_template or body_template is required",
    path: ["body_template"],
  });

/**
 * Body of `PUT /templates/:id` (REF-001 §5.3). Omitted fields keep their current value; `null`
 * clears title_template/body_template/description. Any content field creates a new version.
 */
export const UpdateTemplateBody = z
  .strictObject({
    name: Name.optional(),
    title_template: TemplateSource.nullable().optional(),
    body_template: TemplateSource.nullable().optional(),
    data_template: DataTemplate.optional(),
    description: Description.optional(),
    variables: TemplateVariables.optional(),
    options: TemplateOptions.optional(),
    channel: z.enum(TEMPLATE_CHANNELS).optional(),
  })
  .refine((b) => Object.keys(b).length > 0, { message: "at least one field is required", path: ["_"] });

/** Fields of an update that change a version's content (the rest is template metadata). */
export const CONTENT_FIELDS = ["title_template", "body_template", "data_template", "variables", "options"] as const;

/** `?version=N` on `GET /templates/:id`. */
export const GetTemplateQuery = z.strictObject({
  version: queryInteger(1, PG_INTEGER_MAX).optional().describe("an older version; defaults to the current one"),
});

const BooleanString = z.enum(["true", "false"]).transform((v) => v === "true");

/** Query of `GET /templates` (REF-001 §5.6). */
export const ListTemplatesQuery = z.strictObject({
  ...PaginationQuery.shape,
  is_active: BooleanString.optional().describe("true: active templates only; false: disabled only"),
  search: z.string().trim().min(1).max(200).optional().describe("case-insensitive substring of the name"),
  channel: z.enum(TEMPLATE_CHANNELS).optional(),
});

/** Query of `GET /templates/:id/versions`. */
export const ListVersionsQuery = z.strictObject({ ...PaginationQuery.shape });

/** Body of `POST /templates/:id/render-test` (REF-001 §5.7). */
export const RenderTestBody = z.strictObject({
  variables: z.record(z.string(), z.unknown()).default({}),
  version: z.number().int().min(1).max(PG_INTEGER_MAX).optional().describe("render an older version; defaults to the current one"),
});

const VariableView = z.object({ name: z.string(), required: z.boolean(), default: z.string().optional(), description: z.string().optional() });

/** Response of `POST /templates`. */
export const CreatedTemplateView = z.object({ template_id: z.string(), name: z.string(), created_at: z.string(), version: z.number().int() });

/** Response of `GET /templates/:id` (REF-001 §5.2 plus variables, options, channel, current_version). */
export const TemplateView = z.object({
  id: z.string(),
  name: z.string(),
  title_template: z.string().nullable(),
  body_template: z.string().nullable(),
  data_template: z.record(z.string(), z.unknown()),
  description: z.string().nullable(),
  variables: z.array(VariableView),
  options: z.record(z.string(), z.unknown()),
  channel: z.string(),
  created_at: z.string(),
  updated_at: z.string(),
  version: z.number().int().describe("the version shown"),
  current_version: z.number().int(),
  version_created_at: z.string(),
  is_active: z.boolean(),
});

/** Response of `PUT /templates/:id`. */
export const UpdatedTemplateView = z.object({ id: z.string(), version: z.number().int(), updated_at: z.string() });

/** Response of disable/enable. */
export const TemplateStatusView = z.object({ id: z.string(), is_active: z.boolean(), updated_at: z.string() });

/** One row of `GET /templates`. */
export const TemplateSummaryView = z.object({
  id: z.string(),
  name: z.string(),
  description: z.string().nullable(),
  channel: z.string(),
  version: z.number().int(),
  is_active: z.boolean(),
  created_at: z.string(),
  updated_at: z.string(),
});

/** Response of `GET /templates`. */
export const TemplateListView = z.object({ templates: z.array(TemplateSummaryView), pagination: PaginationSchema });

/** One row of `GET /templates/:id/versions`. */
export const TemplateVersionView = z.object({
  version: z.number().int(),
  title_template: z.string().nullable(),
  body_template: z.string().nullable(),
  data_template: z.record(z.string(), z.unknown()),
  variables: z.array(VariableView),
  options: z.record(z.string(), z.unknown()),
  is_current: z.boolean(),
  created_at: z.string(),
});

/** Response of `GET /templates/:id/versions`. */
export const TemplateVersionListView = z.object({ versions: z.array(TemplateVersionView), pagination: PaginationSchema });

/** Response of `POST /templates/:id/render-test` (REF-001 §5.7 plus version and missing-variable warnings). */
export const RenderTestView = z.object({
  title: z.string().nullable(),
  body: z.string().nullable(),
  data: z.record(z.string(), z.unknown()),
  version: z.number().int(),
  missing_variables: z.array(z.string()),
  warnings: z.array(z.string()),
});
