/**
 * Per-recipient campaign content. A campaign template that references recipient fields
 * (`{{tags.first_name}}`, `{{subscription.language}}`, `{{user.external_id}}`) is rendered once per
 * recipient when its batch creates the messages; anything else is rendered once at creation.
 * Pure: the callers read the recipients (selectRecipientFields) and write the messages.
 */
import type { Knex } from "knex";
import { ApiError } from "../http/errors";
import { isRecord, MAX_NESTING_DEPTH, referencedVariables, renderedContent, renderTemplate, type RenderableTemplate } from "../templates/render";

/** Variable roots that name the recipient, not a campaign variable. */
export const RECIPIENT_ROOTS = ["tags", "subscription", "user"] as const;

/** A subscription as read for personalized content: what selectRecipientFields adds to id and user_id. */
export interface RecipientRecord {
  id: string;
  user_id: string | null;
  subscription_type: string;
  tags: Record<string, unknown> | null;
  language: string | null;
  country: string | null;
  timezone: string | null;
  external_id: string | null;
}

/** The recipient fields a personalized template can use. */
export type RecipientFields = Omit<RecipientRecord, "id" | "user_id"> & { subscription_id: string };

/**
 * Adds the fields a personalized template reads to a query over `subscriptions as s` (the user's
 * external_id through a tenant-scoped join). Only callers rendering per recipient pay for it.
 */
export function selectRecipientFields(query: Knex.QueryBuilder): Knex.QueryBuilder {
  return query
    .leftJoin("users as u", (on) => on.on("u.id", "s.user_id").andOn("u.application_id", "s.application_id"))
    .select("s.tags", "s.language", "s.country", "s.timezone", "u.external_id");
}

/** Rendered content of one message. */
export interface RenderedContent {
  title: string | null;
  body: string | null;
  data: Record<string, unknown>;
}

const rootOf = (name: string): string => name.split(".")[0]!;
const isRecipientName = (name: string): boolean => (RECIPIENT_ROOTS as readonly string[]).includes(rootOf(name));

/** True when the template uses any recipient field, so it must be rendered per recipient. */
export function referencesRecipient(template: RenderableTemplate): boolean {
  return referencedVariables(template).some(isRecipientName) || (template.variables ?? []).some((v) => isRecipientName(v.name));
}

/**
 * Refuses campaign variables named like a recipient root (they would be shadowed per recipient)
 * and checks the campaign-wide part of the template now: syntax and required campaign variables,
 * with every recipient field present as a placeholder, so a creation error is never deferred to
 * the batches. Answers that placeholder rendering, so the caller can check its size and keys too.
 */
export function validatePersonalizedTemplate(template: RenderableTemplate, variables: Record<string, unknown>): RenderedContent {
  const reserved = Object.keys(variables).filter(isRecipientName);
  if (reserved.length > 0) {
    throw new ApiError("validation_error", "The request body failed validation", {
      in: "body",
      fields: Object.fromEntries(reserved.map((k) => [`variables.${k}`, `${rootOf(k)} is the recipient's own field; it cannot be a campaign variable`])),
    });
  }
  // The probe has the shape every recipient's view has: each root an object, with a placeholder
  // leaf for each field the template names. A template that prints a root itself ({{user}}) is then
  // refused here, as every recipient's render would refuse it.
  const probe: Record<string, unknown> = { tags: {}, subscription: {}, user: {} };
  const names = [...referencedVariables(template), ...(template.variables ?? []).map((v) => v.name)];
  const fields = names.filter((name) => isRecipientName(name) && name.includes("."));
  return renderedContent(renderTemplate(template, { ...variables, ...probe, ...collapse(Object.fromEntries(fields.map((name) => [name, "-"]))) }));
}

/** `{"tags.a": x, "tags": {...}}` would conflict in the renderer: keep the deepest names only. */
function collapse(flat: Record<string, unknown>): Record<string, unknown> {
  const names = Object.keys(flat);
  return Object.fromEntries(names.filter((n) => !names.some((other) => other.startsWith(`${n}.`))).map((n) => [n, flat[n]]));
}

/** Tag values a template can print: strings, numbers and booleans (other JSON is left out). */
function printableTags(tags: Record<string, unknown> | null): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const [key, value] of Object.entries(tags ?? {})) {
    if (key.includes(".") || key.length === 0) continue;
    if (typeof value === "string" || typeof value === "boolean" || (typeof value === "number" && Number.isFinite(value))) out[key] = value;
  }
  return out;
}

/**
 * The campaign variables whose root the template names (in its text or its declared variables).
 * The renderer copies its whole view on every call, so a batch renders each recipient against this
 * cut instead of every variable the campaign was created with: 250 KB of unused variables took
 * 58 ms per recipient, half a minute per 500-recipient batch, blocking the worker's event loop.
 */
function variablesTheTemplateReads(template: RenderableTemplate, variables: Record<string, unknown>): Record<string, unknown> {
  const roots = new Set([...referencedVariables(template), ...(template.variables ?? []).map((v) => v.name)].map(rootOf));
  return Object.fromEntries(Object.entries(variables).filter(([key]) => roots.has(rootOf(key))));
}

/**
 * Prepares a personalized campaign template for rendering once per recipient. The renderer it
 * answers throws the renderer's ApiError (`missing_required_variable`, …) when a recipient lacks a
 * required field; the batch fails that recipient's message with the code instead of sending a
 * broken text.
 */
export function recipientRenderer(template: RenderableTemplate, variables: Record<string, unknown>): (recipient: RecipientFields) => RenderedContent {
  const read = variablesTheTemplateReads(template, variables);
  return (recipient) => {
    return renderedContent(renderTemplate(template, { ...read, ...recipientView(recipient) }));
  };
}

/** What a template sees of its recipient: the `tags`, `subscription` and `user` roots. */
function recipientView(recipient: RecipientFields): Record<(typeof RECIPIENT_ROOTS)[number], Record<string, unknown>> {
  const subscription: Record<string, string> = { id: recipient.subscription_id, type: recipient.subscription_type };
  if (recipient.language) subscription.language = recipient.language;
  if (recipient.country) subscription.country = recipient.country;
  if (recipient.timezone) subscription.timezone = recipient.timezone;
  const user: Record<string, string> = recipient.external_id ? { external_id: recipient.external_id } : {};
  return { tags: printableTags(recipient.tags), subscription, user };
}

/**
 * Renderer for a single send (`POST /messages/template`) of a template that reads recipient
 * fields: each device's own fields, under what the caller passed. Unlike a campaign, a single send
 * has always taken `variables.user.name` and the like from its caller (it knows its user), so the
 * caller's values stay, in either form (`{"tags": {"a": …}}` or `{"tags.a": …}`); the recipient's
 * fill in the fields the caller left out, and only under a root whose fields the template reads
 * (a template printing a `user` variable as text keeps its default). As for campaigns, each device
 * is rendered against only the variables the template names.
 */
export function singleSendRenderer(template: RenderableTemplate, variables: Record<string, unknown>): (recipient: RecipientFields) => RenderedContent {
  const read = variablesTheTemplateReads(template, variables);
  const names = [...referencedVariables(template), ...(template.variables ?? []).map((v) => v.name)];
  const rootsWithFieldsRead = new Set(names.filter((name) => isRecipientName(name) && name.includes(".")).map(rootOf));
  const { paths: callerPaths, roots: callerTextRoots } = recipientPathsGiven(read);
  return (recipient) => {
    const view: Record<string, unknown> = { ...read };
    for (const [root, fields] of Object.entries(recipientView(recipient))) {
      if (!rootsWithFieldsRead.has(root) || callerTextRoots.has(root)) continue;
      // Dotted names merge with whatever form the caller used; a field the caller gave is skipped.
      for (const [field, value] of Object.entries(fields)) if (!callerPaths.has(`${root}.${field}`)) view[`${root}.${field}`] = value;
    }
    return renderedContent(renderTemplate(template, view));
  };
}

/**
 * Every dotted path (and each prefix of one) the caller's variables give under a recipient root,
 * in nested or dotted form; and the roots the caller gave as a value rather than an object.
 */
function recipientPathsGiven(variables: Record<string, unknown>): { paths: Set<string>; roots: Set<string> } {
  const paths = new Set<string>();
  const roots = new Set<string>();
  const walk = (path: string, value: unknown, depth: number): void => {
    const segments = path.split(".");
    for (let i = 2; i <= segments.length; i++) paths.add(segments.slice(0, i).join("."));
    if (isRecord(value) && depth < MAX_NESTING_DEPTH) for (const [key, child] of Object.entries(value)) walk(`${path}.${key}`, child, depth + 1);
  };
  for (const [key, value] of Object.entries(variables)) {
    if (!isRecipientName(key)) continue;
    if (key === rootOf(key) && !isRecord(value)) roots.add(key);
    else walk(key, value, 0);
  }
  return { paths, roots };
}

/**
 * Per-recipient content from a renderer, for a request that creates one message per device: a
 * device the template cannot be rendered for refuses the whole request (before anything is
 * written), and the error names that subscription.
 */
export function contentPerRecipient<T extends object>(base: T, renderFor: (recipient: RecipientFields) => RenderedContent): (recipient: RecipientRecord) => T & RenderedContent {
  return (recipient) => {
    try {
      return { ...base, ...renderFor({ ...recipient, subscription_id: recipient.id }) };
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      throw new ApiError(error.code, error.message, { ...error.details, subscription_id: recipient.id });
    }
  };
}
