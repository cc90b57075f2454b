import { defineRoute, type RouteSpec } from "../http/route";
import { IdParams } from "../http/validation";
import { validateApnsMessage, validateFcmMessage } from "../providers/validation";
import type { ValidationIssue } from "../providers/types";
import { storedPushOptions, toPushMessage } from "../messages/push-options";
import { renderTemplate, type RenderedTemplate } from "./render";
import {
  contentView,
  createTemplate,
  getTemplateVersion,
  listTemplateVersions,
  listTemplates,
  setTemplateActive,
  updateTemplate,
  versionContent,
  type TemplateRow,
} from "./repository";
import {
  CreateTemplateBody,
  CreatedTemplateView,
  GetTemplateQuery,
  ListTemplatesQuery,
  ListVersionsQuery,
  RenderTestBody,
  RenderTestView,
  TemplateListView,
  TemplateStatusView,
  TemplateVersionListView,
  TemplateView,
  UpdateTemplateBody,
  UpdatedTemplateView,
} from "./schemas";
import { iso } from "../http/format";

const TAG = "Templates";


const PLATFORMS = [
  { devices: "iOS", validate: validateApnsMessage },
  { devices: "Android", validate: validateFcmMessage },
] as const;

/**
 * What a send of this rendering would refuse, as render-test warnings: the same provider rules
 * the send endpoints apply (COMP-002: title/body/payload sizes, reserved data keys, empty text),
 * which depend on the rendered values and so cannot be checked when the template is saved. An
 * issue of one platform only names the devices whose sends it fails.
 */
export function sendWarnings(rendered: Pick<RenderedTemplate, "title" | "body" | "data">, options: Record<string, unknown>, now: Date): string[] {
  const probe = toPushMessage(
    { id: "00000000-0000-7000-8000-000000000000", title: rendered.title, body: rendered.body, data: rendered.data, options: storedPushOptions(options, now) },
    "render-test-probe-token",
  );
  const key = (i: ValidationIssue) => `${i.code}|${i.field}|${i.message}`;
  const perPlatform = PLATFORMS.map((p) => ({ devices: p.devices, issues: p.validate(probe) }));
  const warnings: string[] = [];
  const seen = new Set<string>();
  for (const { devices, issues } of perPlatform) {
    for (const found of issues) {
      if (seen.has(key(found))) continue;
      seen.add(key(found));
      const everywhere = perPlatform.every((p) => p.issues.some((i) => key(i) === key(found)));
      warnings.push(`${found.message}; sends${everywhere ? "" : ` to ${devices} devices`} fail with ${found.code}`);
    }
  }
  return warnings;
}

function statusView(row: TemplateRow): { id: string; is_active: boolean; updated_at: string } {
  return { id: row.id, is_active: row.is_active, updated_at: iso(row.updated_at) };
}

/** Routes of the templates domain (REF-001 §5); every query is scoped to the caller's application. */
export const templateRoutes: RouteSpec[] = [
  defineRoute({
    method: "post",
    path: "/templates",
    summary: "Create a message template (version 1)",
    tag: TAG,
    auth: "apiKey",
    body: CreateTemplateBody,
    responses: { 201: { description: "Created", schema: CreatedTemplateView } },
    handler: async ({ body, application, deps }) => {
      const template = await createTemplate(deps.db, application.id, body);
      return { status: 201, data: { template_id: template.id, name: template.name, created_at: iso(template.created_at), version: template.current_version } };
    },
  }),
  defineRoute({
    method: "get",
    path: "/templates",
    summary: "List templates (filter by is_active, channel, name search)",
    tag: TAG,
    auth: "apiKey",
    query: ListTemplatesQuery,
    responses: { 200: { description: "Templates, newest first", schema: TemplateListView } },
    handler: async ({ query, application, deps }) => {
      const { rows, pagination } = await listTemplates(
        deps.db,
        application.id,
        { isActive: query.is_active, search: query.search, channel: query.channel },
        query.page,
        query.per_page,
      );
      return {
        data: {
          templates: rows.map((r) => ({
            id: r.id,
            name: r.name,
            description: r.description,
            channel: r.channel,
            version: r.current_version,
            is_active: r.is_active,
            created_at: iso(r.created_at),
            updated_at: iso(r.updated_at),
          })),
          pagination,
        },
      };
    },
  }),
  defineRoute({
    method: "get",
    path: "/templates/:id",
    summary: "Get a template with its current version's content (or ?version=N)",
    tag: TAG,
    auth: "apiKey",
    params: IdParams,
    query: GetTemplateQuery,
    responses: { 200: { description: "The template", schema: TemplateView } },
    handler: async ({ params, query, application, deps }) => {
      const { template, version, content } = await getTemplateVersion(deps.db, application.id, params.id, query.version);
      return {
        data: {
          id: template.id,
          name: template.name,
          ...contentView(content),
          description: template.description,
          channel: template.channel,
          created_at: iso(template.created_at),
          updated_at: iso(template.updated_at),
          version: version.version,
          current_version: template.current_version,
          version_created_at: iso(version.created_at),
          is_active: template.is_active,
        },
      };
    },
  }),
  defineRoute({
    method: "put",
    path: "/templates/:id",
    summary: "Update a template; content changes create a new immutable version",
    tag: TAG,
    auth: "apiKey",
    params: IdParams,
    body: UpdateTemplateBody,
    responses: { 200: { description: "The template's current version", schema: UpdatedTemplateView } },
    handler: async ({ params, body, application, deps }) => {
      const { template, version } = await updateTemplate(deps.db, application.id, params.id, body);
      return { data: { id: template.id, version, updated_at: iso(template.updated_at) } };
    },
  }),
  defineRoute({
    method: "post",
    path: "/templates/:id/disable",
    summary: "Disable a template (sends using it fail with template_inactive)",
    tag: TAG,
    auth: "apiKey",
    params: IdParams,
    responses: { 200: { description: "Disabled", schema: TemplateStatusView } },
    handler: async ({ params, application, deps }) => ({ data: statusView(await setTemplateActive(deps.db, application.id, params.id, false)) }),
  }),
  defineRoute({
    method: "post",
    path: "/templates/:id/enable",
    summary: "Re-enable a disabled template",
    tag: TAG,
    auth: "apiKey",
    params: IdParams,
    responses: { 200: { description: "Enabled", schema: TemplateStatusView } },
    handler: async ({ params, application, deps }) => ({ data: statusView(await setTemplateActive(deps.db, application.id, params.id, true)) }),
  }),
  defineRoute({
    method: "get",
    path: "/templates/:id/versions",
    summary: "List a template's versions, newest first",
    tag: TAG,
    auth: "apiKey",
    params: IdParams,
    query: ListVersionsQuery,
    responses: { 200: { description: "Versions", schema: TemplateVersionListView } },
    handler: async ({ params, query, application, deps }) => {
      const { template, rows, pagination } = await listTemplateVersions(deps.db, application.id, params.id, query.page, query.per_page);
      return {
        data: {
          versions: rows.map((row) => ({
            version: row.version,
            ...contentView(versionContent(row)),
            is_current: row.version === template.current_version,
            created_at: iso(row.created_at),
          })),
          pagination,
        },
      };
    },
  }),
  defineRoute({
    method: "post",
    path: "/templates/:id/render-test",
    summary: "Render a template with sample variables, reporting missing ones",
    tag: TAG,
    auth: "apiKey",
    params: IdParams,
    body: RenderTestBody,
    responses: { 200: { description: "The rendered message", schema: RenderTestView } },
    handler: async ({ params, body, application, deps }) => {
      // A disabled template can still be tested (e.g. before re-enabling it); only sends refuse it.
      const { template, version, content } = await getTemplateVersion(deps.db, application.id, params.id, body.version);
      const rendered = renderTemplate(content, body.variables);
      const warnings = [...rendered.warnings];
      if (!template.is_active) warnings.push("the template is disabled; sends using it fail with template_inactive");
      // Size limits and reserved keys apply to the rendered message (COMP-002), so they are checked
      // here and at send time, not at create.
      warnings.push(...sendWarnings(rendered, content.options, new Date()));
      return {
        data: {
          title: rendered.title,
          body: rendered.body,
          data: rendered.data,
          version: version.version,
          missing_variables: rendered.missingVariables,
          warnings,
        },
      };
    },
  }),
];
