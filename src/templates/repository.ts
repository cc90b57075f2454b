/**
 * Data access for message templates. A template row holds metadata (name, description, channel,
 * is_active, current_version); its content lives in immutable `message_template_versions` rows, so a
 * message that recorded (template_id, template_version) can always be reproduced.
 */
import type { Knex } from "knex";
import type { z } from "zod";
import { ApiError } from "../http/errors";
import { paginate, type Pagination } from "../http/pagination";
import { uuidField } from "../http/validation";
import { newId } from "../db/ids";
import type { RenderableTemplate, TemplateVariable } from "./render";
import type { CreateTemplateBody, TemplateOptionsValue, UpdateTemplateBody } from "./schemas";
import { CONTENT_FIELDS } from "./schemas";
import { stringify as stableStringify } from "safe-stable-stringify";

type Db = Knex | Knex.Transaction;

/** A `message_templates` row. */
export interface TemplateRow {
  id: string;
  application_id: string;
  name: string;
  description: string | null;
  channel: string;
  is_active: boolean;
  current_version: number;
  created_at: Date;
  updated_at: Date;
}

/** A `message_template_versions` row (immutable once inserted). */
export interface TemplateVersionRow {
  id: string;
  template_id: string;
  application_id: string;
  version: number;
  title: string | null;
  body: string;
  data_template: Record<string, unknown>;
  variables: TemplateVariable[];
  options: TemplateOptionsValue;
  created_at: Date;
}

/** Everything needed to render and send one template version. */
export interface TemplateContent extends RenderableTemplate {
  title: string | null;
  body: string | null;
  dataTemplate: Record<string, unknown>;
  variables: TemplateVariable[];
  options: TemplateOptionsValue;
}

/** What the message pipeline gets from {@link loadTemplateForSend}. */
export interface TemplateForSend {
  templateId: string;
  version: number;
  channel: string;
  content: TemplateContent;
}

const NAME_UNIQUE = "message_templates_application_id_name_key";

/** The REF-001 404 for a template that does not exist or belongs to another application. */
export function templateNotFound(id: string, version?: number): ApiError {
  return version === undefined
    ? new ApiError("template_not_found", "Template not found", { id })
    : new ApiError("template_not_found", `Template version ${version} not found`, { id, version });
}

/**
 * Turns the per-application name uniqueness violation into a field error naming the template that
 * has the name (a create retried after a lost response learns the id it made); rethrows anything else.
 */
async function rethrowNameConflict(db: Knex, applicationId: string, name: string | undefined, error: unknown): Promise<never> {
  const pg = error as { code?: string; constraint?: string };
  if (pg?.code === "23505" && pg.constraint === NAME_UNIQUE) {
    const holder = name === undefined ? undefined : await db("message_templates").where({ application_id: applicationId, name }).first<{ id: string } | undefined>("id");
    throw new ApiError("validation_error", "The request body failed validation", {
      in: "body",
      fields: { name: "a template with this name already exists" },
      ...(holder ? { template_id: holder.id } : {}),
    });
  }
  throw error;
}

// The schema stores a NOT NULL body; "" stands for "no body template" (REF-001 allows title-only).
function contentOf(version: TemplateVersionRow): TemplateContent {
  return {
    title: version.title,
    body: version.body === "" ? null : version.body,
    dataTemplate: version.data_template ?? {},
    variables: version.variables ?? [],
    options: version.options ?? {},
  };
}

function versionColumns(content: { title: string | null; body: string | null; dataTemplate: unknown; variables: unknown; options: unknown }) {
  // jsonb values are stringified: pg would otherwise send a JS array as a Postgres array literal.
  return {
    title: content.title || null,
    body: content.body ?? "",
    data_template: JSON.stringify(content.dataTemplate ?? {}),
    variables: JSON.stringify(content.variables ?? []),
    options: JSON.stringify(content.options ?? {}),
  };
}

/** JSON with object keys sorted (arrays keep their order), so jsonb's key reordering compares equal. */
function canonicalJson(value: unknown): string {
  return stableStringify(value ?? null) ?? "null";
}

/**
 * Whether two contents would store the same version row: "" and null are both "no title/body"
 * (see {@link versionColumns}), and jsonb does not keep key order.
 */
export function sameContent(
  a: { title: string | null; body: string | null; dataTemplate: unknown; variables: unknown; options: unknown },
  b: { title: string | null; body: string | null; dataTemplate: unknown; variables: unknown; options: unknown },
): boolean {
  const columns = (c: typeof a) => canonicalJson([c.title || null, c.body || null, c.dataTemplate ?? {}, c.variables ?? [], c.options ?? {}]);
  return columns(a) === columns(b);
}

/** Stores `required` explicitly so later readers need not know the default. */
function normalizeVariables(variables: ReadonlyArray<{ name: string; required?: boolean; default?: string; description?: string }> | undefined): TemplateVariable[] {
  return (variables ?? []).map((v) => ({
    name: v.name,
    required: v.required ?? false,
    ...(v.default !== undefined ? { default: v.default } : {}),
    ...(v.description !== undefined ? { description: v.description } : {}),
  }));
}

/** Creates a template and its version 1 in one transaction. */
export async function createTemplate(db: Knex, applicationId: string, input: z.output<typeof CreateTemplateBody>): Promise<TemplateRow> {
  const id = newId();
  try {
    return await db.transaction(async (trx) => {
      const [template] = await trx("message_templates")
        .insert({
          id,
          application_id: applicationId,
          name: input.name,
          description: input.description ?? null,
          channel: input.channel ?? "push",
          current_version: 1,
        })
        .returning<TemplateRow[]>("*");
      await trx("message_template_versions").insert({
        id: newId(),
        template_id: id,
        application_id: applicationId,
        version: 1,
        ...versionColumns({
          title: input.title_template ?? null,
          body: input.body_template ?? null,
          dataTemplate: input.data_template,
          variables: normalizeVariables(input.variables),
          options: input.options,
        }),
      });
      return template!;
    });
  } catch (error) {
    return rethrowNameConflict(db, applicationId, input.name, error);
  }
}

/** A template of this application, or undefined (also for malformed ids, which cannot exist). */
async function findTemplate(db: Db, applicationId: string, id: string, forUpdate = false): Promise<TemplateRow | undefined> {
  if (!uuidField.safeParse(id).success) return undefined;
  const query = db("message_templates").where({ application_id: applicationId, id });
  if (forUpdate) query.forUpdate();
  return query.first<TemplateRow | undefined>();
}

async function findVersion(db: Db, applicationId: string, templateId: string, version: number): Promise<TemplateVersionRow | undefined> {
  return db("message_template_versions").where({ application_id: applicationId, template_id: templateId, version }).first<TemplateVersionRow | undefined>();
}

/** A template and one of its versions (the current one by default); template_not_found otherwise. */
export async function getTemplateVersion(
  db: Db,
  applicationId: string,
  id: string,
  version?: number,
): Promise<{ template: TemplateRow; version: TemplateVersionRow; content: TemplateContent }> {
  const template = await findTemplate(db, applicationId, id);
  if (!template) throw templateNotFound(id);
  const row = await findVersion(db, applicationId, id, version ?? template.current_version);
  if (!row) {
    // The current version always exists (same transaction as the bump); only an explicit ?version can miss.
    throw templateNotFound(id, version ?? template.current_version);
  }
  return { template, version: row, content: contentOf(row) };
}

/**
 * Applies an update: metadata changes in place; content changes insert version current+1 and bump
 * current_version. The template row is locked (SELECT … FOR UPDATE) so concurrent updates get
 * consecutive version numbers instead of colliding.
 */
export async function updateTemplate(
  db: Knex,
  applicationId: string,
  id: string,
  input: z.output<typeof UpdateTemplateBody>,
): Promise<{ template: TemplateRow; version: number }> {
  try {
    return await db.transaction(async (trx) => {
      const template = await findTemplate(trx, applicationId, id, true);
      if (!template) throw templateNotFound(id);
      const changes: Record<string, unknown> = {};
      if (input.name !== undefined) changes.name = input.name;
      if (input.description !== undefined) changes.description = input.description;
      if (input.channel !== undefined) changes.channel = input.channel;

      let version = template.current_version;
      if (CONTENT_FIELDS.some((field) => input[field] !== undefined)) {
        const current = await findVersion(trx, applicationId, id, template.current_version);
        if (!current) throw new Error(`template ${id} has no row for its current version ${template.current_version}`);
        const previous = contentOf(current);
        const next = {
          title: input.title_template !== undefined ? input.title_template : previous.title,
          body: input.body_template !== undefined ? input.body_template : previous.body,
          dataTemplate: input.data_template ?? previous.dataTemplate,
          variables: input.variables !== undefined ? normalizeVariables(input.variables) : previous.variables,
          options: input.options ?? previous.options,
        };
        if (!next.title && !next.body) {
          throw new ApiError("validation_error", "The request body failed validation", {
            in: "body",
            fields: { body_template: "title_template or body_template is required" },
          });
        }
        // PUT is idempotent: a retried (or repeated) PUT of the current content must not publish
        // another version, which would bump current_version and the number new campaigns pin.
        if (!sameContent(next, previous)) {
          version = template.current_version + 1;
          await trx("message_template_versions").insert({ id: newId(), template_id: id, application_id: applicationId, version, ...versionColumns(next) });
          changes.current_version = version;
        }
      }
      // Nothing to change (a repeated PUT): answer the template as it stands, updated_at untouched.
      if (Object.keys(changes).length === 0) return { template, version };
      const [updated] = await trx("message_templates").where({ application_id: applicationId, id }).update(changes).returning<TemplateRow[]>("*");
      return { template: updated!, version };
    });
  } catch (error) {
    return rethrowNameConflict(db, applicationId, input.name, error);
  }
}

/** Enables or disables a template; a no-op (updated_at unchanged) when it is already in that state. */
export async function setTemplateActive(db: Knex, applicationId: string, id: string, active: boolean): Promise<TemplateRow> {
  if (!uuidField.safeParse(id).success) throw templateNotFound(id);
  const [changed] = await db("message_templates")
    .where({ application_id: applicationId, id })
    .whereNot("is_active", active)
    .update({ is_active: active })
    .returning<TemplateRow[]>("*");
  if (changed) return changed;
  const existing = await findTemplate(db, applicationId, id);
  if (!existing) throw templateNotFound(id);
  return existing;
}

/** Filters of `GET /templates`. */
export interface TemplateFilters {
  isActive?: boolean;
  search?: string;
  channel?: string;
}

/** One page of an application's templates, newest first. */
export async function listTemplates(
  db: Knex,
  applicationId: string,
  filters: TemplateFilters,
  page: number,
  perPage: number,
): Promise<{ rows: TemplateRow[]; pagination: Pagination }> {
  const query = db("message_templates").where("application_id", applicationId);
  if (filters.isActive !== undefined) query.where("is_active", filters.isActive);
  if (filters.channel !== undefined) query.where("channel", filters.channel);
  if (filters.search !== undefined) {
    // Escape LIKE metacharacters so "50%" searches for a literal percent sign.
    const escaped = filters.search.replace(/[\\%_]/g, (c) => `\\${c}`);
    query.whereRaw("name ILIKE ? ESCAPE '\\'", [`%${escaped}%`]);
  }
  return paginate<TemplateRow>(query.select("*"), page, perPage, [
    { column: "created_at", order: "desc" },
    { column: "id", order: "desc" },
  ]);
}

/** One page of a template's versions, newest first; template_not_found for other tenants. */
export async function listTemplateVersions(
  db: Knex,
  applicationId: string,
  id: string,
  page: number,
  perPage: number,
): Promise<{ template: TemplateRow; rows: TemplateVersionRow[]; pagination: Pagination }> {
  const template = await findTemplate(db, applicationId, id);
  if (!template) throw templateNotFound(id);
  const { rows, pagination } = await paginate<TemplateVersionRow>(
    db("message_template_versions").where({ application_id: applicationId, template_id: id }).select("*"),
    page,
    perPage,
    [{ column: "version", order: "desc" }],
  );
  return { template, rows, pagination };
}

/**
 * Loads a template for sending (message pipeline, campaigns): the current version, or a pinned
 * `version` (campaigns record the version they were created with). Throws `template_not_found` for
 * unknown, malformed or other applications' ids, `template_inactive` when it is disabled, and a
 * `validation_error` on `template_id` for a channel other than push.
 */
export async function loadTemplateForSend(db: Db, applicationId: string, templateId: string, version?: number): Promise<TemplateForSend> {
  const loaded = await getTemplateVersion(db, applicationId, templateId, version);
  if (!loaded.template.is_active) throw new ApiError("template_inactive", "The template is disabled", { id: templateId });
  // Templates can be written for channels this release does not deliver yet; sending one as a
  // push would put an email's or SMS's text on lock screens.
  if (loaded.template.channel !== "push") {
    throw new ApiError("validation_error", "The template cannot be sent as a push", {
      in: "body",
      fields: { template_id: `the template is for the ${loaded.template.channel} channel; only push templates can be sent in this release` },
    });
  }
  return { templateId, version: loaded.version.version, channel: loaded.template.channel, content: loaded.content };
}

/** Converts stored content to the API's field names. */
export function contentView(content: TemplateContent): {
  title_template: string | null;
  body_template: string | null;
  data_template: Record<string, unknown>;
  variables: TemplateVariable[];
  options: TemplateOptionsValue;
} {
  return {
    title_template: content.title,
    body_template: content.body,
    data_template: content.dataTemplate,
    variables: content.variables,
    options: content.options,
  };
}

/** Content of a stored version row. */
export function versionContent(row: TemplateVersionRow): TemplateContent {
  return contentOf(row);
}
