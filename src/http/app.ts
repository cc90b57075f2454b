import path from "node:path";
import express, { type NextFunction, type Request, type Response } from "express";
import { pinoHttp } from "pino-http";
import { z } from "zod";
import type { Deps } from "../deps";
import { ApiError } from "./errors";
import { requireAdmin, requireApiKey } from "./auth";
import { apiKeyRateLimit } from "./rate-limit";
import { assertStorableInput, parseOrThrow } from "./validation";
import { buildOpenApiDocument, docsPageHtml } from "./openapi";
import type { RouteSpec } from "./route";
import { newId } from "../db/ids";
import { redactRequestUrl, serializeError } from "../logger";
import { checkReadiness } from "./health";
import { httpRequestDuration, setBacklogSource } from "../metrics/registry";
import { METRICS_CONTENT_TYPE, renderMetrics } from "../metrics/exposition";
import { isDatabaseUnavailable, isStatementCancelled, isTransientConflict } from "../db/availability";

/** Seconds a client is asked to wait before retrying while PostgreSQL is away. */
const DATABASE_RETRY_AFTER_SECONDS = 5;
/** A write conflict clears as soon as the other transaction commits. */
const CONFLICT_RETRY_AFTER_SECONDS = 1;

/** Base path of the public REST API (REF-001 §1.1). */
export const API_BASE = "/api/v1";

const REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;

/** The query, or JSON body, of a route that takes none. */
const NOTHING = z.strictObject({});

/** Whether the request carries a body (an empty Content-Length: 0 one counts as none). */
function hasContent(req: Request): boolean {
  return Number(req.headers["content-length"] ?? 0) > 0 || req.headers["transfer-encoding"] !== undefined;
}

function asyncRoute(spec: RouteSpec, deps: Deps) {
  return async (req: Request, res: Response, next: NextFunction): Promise<void> => {
    try {
      const bare = spec.optionalBody === true && !hasContent(req);
      if (spec.body && !bare && !req.is("application/json")) {
        throw new ApiError("invalid_request", "Content-Type must be application/json", { header: "Content-Type" });
      }
      assertStorableInput(req.params, "params");
      assertStorableInput(req.query, "query");
      if (spec.body) assertStorableInput(req.body, "body");
      const params = spec.params ? parseOrThrow(spec.params, req.params, "params") : req.params;
      // A route without query parameters still refuses one: `?dry_run=true` must not send for real.
      const query = parseOrThrow(spec.query ?? NOTHING, req.query, "query");
      // Nor a body: a resend with {"title": "fixed"} must not go out with the old text. `{}` is fine;
      // a body in another type than JSON (curl's -d without a Content-Type) is not read, so refused.
      if (!spec.body && hasContent(req)) {
        if (req.body === undefined) throw new ApiError("invalid_request", "This endpoint takes no request body", { in: "body" });
        parseOrThrow(NOTHING, req.body, "body");
      }
      const body = spec.body ? parseOrThrow(spec.body, bare ? {} : req.body, "body") : undefined;
      const result = await spec.handler({ body, query, params, application: res.locals.application, deps, req, res });
      for (const [name, value] of Object.entries(result.headers ?? {})) res.setHeader(name, value);
      res.status(result.status ?? 200).json({ status: "success", data: result.data });
    } catch (error) {
      next(error);
    }
  };
}

/** Status label of a request whose client closed the connection before the answer (nginx's 499). */
export const CLIENT_CLOSED_REQUEST = "499";

/**
 * Records every request's duration once its connection is done with it ('close'), labelled by the
 * route PATTERN (never the raw URL: ids would explode cardinality and leak into labels); requests
 * no route matched are `unmatched`. A request whose client gave up before the answer (a proxy's
 * timeout while a statement waited) never emits 'finish': it counts with status 499, so the slowest
 * requests of an overload are not the ones missing from the latency and error panels.
 */
function recordRequestDuration(req: Request, res: Response, next: NextFunction): void {
  const started = process.hrtime.bigint();
  res.once("close", () => {
    // Set by the API router per route (its baseUrl is gone once an error leaves the router); req.route covers top-level routes.
    const pattern = res.locals.routePattern as string | undefined;
    const routePath = (req.route as { path?: unknown } | undefined)?.path;
    const route = pattern ?? (typeof routePath === "string" ? `${req.baseUrl}${routePath}` : "unmatched");
    const status = res.writableFinished ? String(res.statusCode) : CLIENT_CLOSED_REQUEST;
    httpRequestDuration.observe({ method: req.method, route, status }, Number(process.hrtime.bigint() - started) / 1e9);
  });
  next();
}

/** Builds the Express application: REF-001 envelope, auth, rate limits, validation, docs, health, and `/metrics` when `serveMetrics`. */
export function createHttpApp(deps: Deps, routes: RouteSpec[], options: { serveMetrics: boolean }): express.Express {
  const app = express();
  app.disable("x-powered-by");
  app.set("trust proxy", true);
  app.use(recordRequestDuration);
  setBacklogSource(deps.db);
  app.use(
    pinoHttp({
      logger: deps.logger,
      genReqId: (req, res) => {
        const incoming = req.headers["x-request-id"];
        const id = typeof incoming === "string" && REQUEST_ID.test(incoming) ? incoming : newId();
        res.setHeader("X-Request-Id", id);
        return id;
      },
      customProps: (_req, res) => {
        const application = (res as Response).locals?.application as { id: string } | undefined;
        return application ? { application_id: application.id } : {};
      },
      autoLogging: { ignore: (req) => req.url === "/healthz" || req.url === "/metrics" },
      serializers: {
        // The URL without external user ids; query and params are dropped (the URL has what is safe of them).
        req: (req: { id: unknown; method: string; url: string; headers: unknown; remoteAddress?: string; remotePort?: number }) => ({
          id: req.id,
          method: req.method,
          url: redactRequestUrl(req.url),
          headers: req.headers,
          remoteAddress: req.remoteAddress,
          remotePort: req.remotePort,
        }),
        err: serializeError,
      },
    }),
  );

  // Prometheus scrape endpoint: unauthenticated like /healthz, so only where the public cannot reach
  // it (the production API serves it on its own metrics port instead).
  if (options.serveMetrics) {
    app.get("/metrics", (_req, res, next) => {
      renderMetrics()
        .then((text) => res.setHeader("Content-Type", METRICS_CONTENT_TYPE).send(text))
        .catch(next);
    });
  }

  app.get("/healthz", (_req, res) => {
    res.json({ status: "success", data: { status: "ok" } });
  });
  app.get("/readyz", (_req, res, next) => {
    checkReadiness(deps)
      .then((report) => res.status(report.ready ? 200 : 503).json(report.ready ? { status: "success", data: report } : new ApiError("service_unavailable", "Not ready", { checks: report.checks }).toBody()))
      .catch(next);
  });

  const openApi = buildOpenApiDocument(routes, API_BASE);
  app.get(`${API_BASE}/openapi.json`, (_req, res) => {
    res.json(openApi);
  });
  const swaggerDir = path.dirname(require.resolve("swagger-ui-dist/package.json"));
  app.use("/docs/assets", express.static(swaggerDir, { index: false }));
  app.get("/docs", (_req, res) => {
    res.type("html").send(docsPageHtml(`${API_BASE}/openapi.json`, "/docs/assets"));
  });

  const router = express.Router();
  // Parsed after the route's guards: an anonymous caller gets 401, not a parse of up to the body limit.
  const jsonBody = express.json({ limit: deps.config.AUTOMATA_MAX_BODY, strict: true, type: "application/json" });
  const rateLimiter = apiKeyRateLimit(deps.db, deps.logger);
  const apiKeyAuth = requireApiKey(deps);
  const adminAuth = requireAdmin(deps);
  for (const spec of routes) {
    const guards = spec.auth === "apiKey" ? [apiKeyAuth, rateLimiter] : spec.auth === "admin" ? [adminAuth] : [];
    const routePattern = `${API_BASE}${spec.path}`;
    const tagRoute = (_req: Request, res: Response, next: NextFunction) => {
      res.locals.routePattern = routePattern;
      next();
    };
    router[spec.method](spec.path, tagRoute, ...guards, jsonBody, asyncRoute(spec, deps));
  }
  app.use(API_BASE, router);

  app.use((req, _res, next) => {
    next(new ApiError("resource_not_found", `No route for ${req.method} ${req.path}`, { path: req.path }));
  });
  app.use((error: unknown, req: Request, res: Response, _next: NextFunction) => {
    const apiError = toApiError(error);
    if (apiError.status >= 500) req.log?.error({ err: error }, "request failed");
    for (const [name, value] of Object.entries(apiError.headers)) res.setHeader(name, value);
    res.status(apiError.status).json(apiError.toBody());
  });
  return app;
}

/** Maps anything a route threw to the REF-001 error it answers with (unknown errors: a logged 500). */
export function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  const type = (error as { type?: string } | null)?.type;
  if (type === "entity.parse.failed") return new ApiError("invalid_request", "The request body is not valid JSON");
  if (type === "entity.too.large") {
    return new ApiError("payload_too_large", "The request body is too large", { limit: (error as { limit?: number }).limit });
  }
  if (type === "encoding.unsupported" || type === "charset.unsupported") return new ApiError("invalid_request", "Unsupported body encoding");
  if (error instanceof z.ZodError) return new ApiError("validation_error", "The request data failed validation");
  if (isDatabaseUnavailable(error)) {
    return new ApiError("service_unavailable", "The database is unavailable or saturated; retry shortly", {}, { "Retry-After": String(DATABASE_RETRY_AFTER_SECONDS) });
  }
  if (isStatementCancelled(error)) {
    return new ApiError("service_unavailable", "The database did not finish this request in time; retry later or narrow it (filters, date range)", {}, { "Retry-After": String(DATABASE_RETRY_AFTER_SECONDS) });
  }
  if (isTransientConflict(error)) {
    return new ApiError("service_unavailable", "A concurrent change to the same data is in progress; retry shortly", {}, { "Retry-After": String(CONFLICT_RETRY_AFTER_SECONDS) });
  }
  // Express's router (a path with a malformed %-escape) and body-parser (a body that does not
  // inflate) mark the client's mistakes with a 4xx status but no type.
  // Only those two: a 4xx that some dependency's client raised (a 401 from an HTTP call) is our
  // failure, not the caller's, and stays a logged 500.
  const status = (error as { status?: unknown; statusCode?: unknown } | null)?.status ?? (error as { statusCode?: unknown } | null)?.statusCode;
  const fromRequestParsing = error instanceof URIError || (error as { expose?: unknown } | null)?.expose === true;
  if (fromRequestParsing && typeof status === "number" && status >= 400 && status < 500) {
    if (status === 413) return new ApiError("payload_too_large", "The request body is too large");
    if (error instanceof URIError) return new ApiError("invalid_request", "The request path is not validly percent-encoded");
    const exposed = (error as { expose?: unknown }).expose === true && error instanceof Error ? error.message : "The request could not be read";
    return new ApiError("invalid_request", exposed);
  }
  return new ApiError("internal_server_error");
}
