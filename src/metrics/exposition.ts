import http from "node:http";
import { listen } from "../infra/http-server";
import type { Logger } from "pino";
import { metricsCollectErrorsTotal, registry } from "./registry";

let temporalMetricsUrl: string | undefined;

/**
 * Remembers where the Temporal SDK's Prometheus exporter listens (set when the runtime is
 * installed with one), so our /metrics can append its text: one scrape target per process.
 */
export function setTemporalMetricsAddress(bindAddress: string | undefined): void {
  if (!bindAddress) {
    temporalMetricsUrl = undefined;
    return;
  }
  // 0.0.0.0 / [::] are bind-all addresses; scrape them on loopback.
  const local = bindAddress.replace(/^0\.0\.0\.0:/, "127.0.0.1:").replace(/^\[::\]:/, "[::1]:");
  temporalMetricsUrl = `http://${local}/metrics`;
}

async function temporalMetricsText(): Promise<string> {
  if (!temporalMetricsUrl) return "";
  try {
    const response = await fetch(temporalMetricsUrl, { signal: AbortSignal.timeout(2_000) });
    if (!response.ok) throw Object.assign(new Error(`HTTP ${response.status}`), { code: `http_${response.status}` });
    return await response.text();
  } catch (error) {
    // The SDK exporter is optional context: our own metrics must still be served without it.
    metricsCollectErrorsTotal.inc({ collector: "temporal_sdk", error: (error as { code?: string }).code ?? (error as Error).name ?? "error" });
    return `# Temporal SDK metrics unavailable from ${temporalMetricsUrl}: ${(error as Error).message.replace(/\n/g, " ")}\n`;
  }
}

/** Content type of the Prometheus text exposition format. */
export const METRICS_CONTENT_TYPE = registry.contentType;

/** The process's metrics in Prometheus text format: our registry, then the Temporal SDK's (when installed here). */
export async function renderMetrics(): Promise<string> {
  const [own, temporal] = await Promise.all([registry.metrics(), temporalMetricsText()]);
  if (!temporal) return own;
  return `${own.endsWith("\n") ? own : `${own}\n`}${temporal}`;
}

/** A listening metrics server and how to stop it. */
export interface MetricsServer {
  server: http.Server;
  port: number;
  close(): Promise<void>;
}

/**
 * A tiny HTTP server for processes without an API (the worker): `GET /metrics` and `GET /healthz`.
 * Port 0 picks a free port (tests).
 */
export async function startMetricsServer(logger: Logger, port: number, host = "0.0.0.0"): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method === "GET" && path === "/healthz") {
      res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify({ status: "success", data: { status: "ok" } }));
      return;
    }
    if (req.method === "GET" && path === "/metrics") {
      renderMetrics().then(
        (text) => res.writeHead(200, { "Content-Type": METRICS_CONTENT_TYPE }).end(text),
        (error: unknown) => {
          logger.error({ err: error }, "metrics rendering failed");
          res.writeHead(500, { "Content-Type": "text/plain" }).end("metrics rendering failed\n");
        },
      );
      return;
    }
    res.writeHead(404, { "Content-Type": "text/plain" }).end("not found\n");
  });
  const listening = await listen(server, port, host);
  return { server, port: listening.port, close: listening.close };
}
