import { z } from "zod";
import type { RouteSpec } from "./route";
import { ERROR_CODES } from "./errors";

type JsonSchema = Record<string, unknown>;

function toSchema(schema: z.ZodType, io: "input" | "output"): JsonSchema {
  const json = z.toJSONSchema(schema, { target: "draft-2020-12", io, unrepresentable: "any" }) as JsonSchema;
  delete json.$schema;
  return json;
}

function parametersOf(schema: z.ZodType | undefined, location: "query" | "path"): unknown[] {
  if (!schema) return [];
  const json = toSchema(schema, "input");
  const properties = (json.properties ?? {}) as Record<string, JsonSchema>;
  const required = new Set((json.required as string[] | undefined) ?? []);
  return Object.entries(properties).map(([name, property]) => ({
    name,
    in: location,
    required: location === "path" || required.has(name),
    schema: property,
    ...(property.description ? { description: property.description } : {}),
  }));
}

const ErrorBody = {
  type: "object",
  required: ["status", "error"],
  properties: {
    status: { const: "error" },
    error: {
      type: "object",
      required: ["code", "message", "details"],
      properties: {
        code: { type: "string", enum: Object.keys(ERROR_CODES) },
        message: { type: "string" },
        details: { type: "object" },
      },
    },
  },
};

/** Builds the OpenAPI 3.1 document from the same route declarations Express validates with. */
export function buildOpenApiDocument(routes: RouteSpec[], serverUrl = "/api/v1"): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const openApiPath = route.path.replace(/:([A-Za-z_]+)/g, "{$1}");
    const responses: Record<string, unknown> = {};
    for (const [status, doc] of Object.entries(route.responses)) {
      responses[status] = {
        description: doc.description,
        content: {
          "application/json": {
            schema: {
              type: "object",
              required: ["status", "data"],
              properties: { status: { const: "success" }, data: doc.schema ? toSchema(doc.schema, "output") : {} },
            },
          },
        },
      };
    }
    responses.default = { description: "REF-001 error envelope", content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } } };
    const headerParams = (route.headers ?? []).map((h) => ({ name: h.name, in: "header", required: h.required ?? false, description: h.description, schema: { type: "string" } }));
    (paths[openApiPath] ??= {})[route.method] = {
      summary: route.summary,
      tags: [route.tag],
      operationId: `${route.method}${openApiPath.replace(/[{}]/g, "").replace(/[/-](\w)/g, (_m, c: string) => c.toUpperCase())}`,
      security: route.auth === "apiKey" ? [{ ApiKey: [] }] : route.auth === "admin" ? [{ AdminToken: [] }] : [],
      parameters: [...parametersOf(route.params, "path"), ...parametersOf(route.query, "query"), ...headerParams],
      ...(route.body
        ? { requestBody: { required: route.optionalBody !== true, content: { "application/json": { schema: toSchema(route.body, "input") } } } }
        : {}),
      responses,
    };
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "Automata-Signal API",
      version: "1.0.0",
      description:
        "Multichannel messaging (APNs, FCM). Every response is `{status: \"success\", data}` or `{status: \"error\", error: {code, message, details}}` (REF-001). Rate limits per API key: 300/1,000/5,000 requests per minute by tier, reported in X-RateLimit-Limit/Remaining/Reset.",
    },
    servers: [{ url: serverUrl }],
    components: {
      securitySchemes: {
        ApiKey: { type: "apiKey", in: "header", name: "X-API-Key" },
        AdminToken: { type: "http", scheme: "bearer" },
      },
      schemas: { Error: ErrorBody },
    },
    paths,
  };
}

/** A self-contained docs page rendering the OpenAPI document with Swagger UI served from our own assets. */
export function docsPageHtml(specUrl: string, assetsPath: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Automata-Signal API</title>
<link rel="stylesheet" href="${assetsPath}/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="${assetsPath}/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({ url: ${JSON.stringify(specUrl)}, dom_id: "#swagger-ui", deepLinking: true });</script>
</body></html>`;
}
