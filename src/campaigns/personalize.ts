/**
 * Per-recipient campaign content. A campaign template that references recipient fields
 * (`{{tags.first_name}}`, `{{subscription.language}}`, `{{user.external_id}}`) is rendered once per
 * recipient when its batch creates the messages; anything else is rendered once at creation.
 * Pure: the callers read the recipients (selectRecipientFields) and write the messages.
 */
import type { Knex } from "knex";
import { ApiError } from "../http/errors";
import { referencedVariables, renderTemplate, type RenderableTemplate } from "../templates/render";

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
  const probe: Record<string, unknown> = {};
  const names = [...referencedVariables(template), ...(template.variables ?? []).map((v) => v.name)];
  for (const name of names.filter(isRecipientName)) probe[name] = "-";
  const rendered = renderTemplate(template, { ...variables, ...collapse(probe) });
  return { title: rendered.title, body: rendered.body, data: rendered.data };
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
 * Renders a personalized campaign template for one recipient. Throws the renderer's ApiError
 * (`missing_required_variable`, …) when this recipient lacks a required field; the batch fails
 * that recipient's message with the code instead of sending a broken text.
 */
export function renderForRecipient(template: RenderableTemplate, variables: Record<string, unknown>, recipient: RecipientFields): RenderedContent {
  const subscription: Record<string, string> = { id: recipient.subscription_id, type: recipient.subscription_type };
  if (recipient.language) subscription.language = recipient.language;
  if (recipient.country) subscription.country = recipient.country;
  if (recipient.timezone) subscription.timezone = recipient.timezone;
  const user: Record<string, string> = recipient.external_id ? { external_id: recipient.external_id } : {};
  const rendered = renderTemplate(template, { ...variables, tags: printableTags(recipient.tags), subscription, user });
  return { title: rendered.title, body: rendered.body, data: rendered.data };
}
