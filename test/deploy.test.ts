/**
 * Deployment files (docker-compose.yml, fly.toml, Dockerfile, deploy/prometheus.yml, Grafana
 * provisioning) checked against the code's configuration names. Docker does not run on our build
 * machines, so this parses the files; no servers are needed.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { parse as parseYaml } from "yaml";
import { parse as parseToml } from "smol-toml";
import { loadConfig, parseDuration } from "../src/config";
import { LONGEST_SEND_CHUNK_MS } from "../src/messages/delivery";
import { CUSTOM_SEARCH_ATTRIBUTES } from "../temporal/search-attributes";

const ROOT = path.resolve(__dirname, "..");
const read = (file: string) => fs.readFileSync(path.join(ROOT, file), "utf8");

type Json = Record<string, unknown>;
interface ComposeService {
  image?: string;
  build?: unknown;
  command?: string | string[];
  entrypoint?: string | string[];
  environment?: Record<string, string | number | boolean | null> | string[];
  ports?: string[];
  expose?: string[];
  depends_on?: Record<string, { condition: string }> | string[];
  healthcheck?: { test: string | string[] };
  stop_grace_period?: string;
  volumes?: string[];
  restart?: string;
}

const compose = parseYaml(read("docker-compose.yml"), { merge: true }) as { services: Record<string, ComposeService>; volumes?: Json };
const services = compose.services;
const fly = parseToml(read("fly.toml")) as Json;
const prometheus = parseYaml(read("deploy/prometheus.yml")) as { scrape_configs: { job_name: string; metrics_path?: string; static_configs: { targets: string[] }[] }[] };

/** Every environment variable name the code reads: the zod schema of src/config.ts plus direct process.env reads. */
function knownEnvNames(): Set<string> {
  const names = new Set<string>();
  const configText = read("src/config.ts");
  const schema = configText.slice(configText.indexOf("const EnvSchema = z.object({"), configText.indexOf("\n});", configText.indexOf("const EnvSchema")));
  for (const match of schema.matchAll(/^ {2}([A-Z][A-Z0-9_]*):/gm)) names.add(match[1]!);
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".test.ts")) {
        const text = fs.readFileSync(full, "utf8");
        for (const match of text.matchAll(/process\.env\.([A-Z][A-Z0-9_]*)|process\.env\[["']([A-Z][A-Z0-9_]*)["']\]|requireEnv\(["']([A-Z][A-Z0-9_]*)["']/g)) {
          names.add((match[1] ?? match[2] ?? match[3])!);
        }
      }
    }
  };
  walk(path.join(ROOT, "src"));
  names.add("NODE_ENV"); // read by dependencies (express, pino), not by our code
  return names;
}
const KNOWN = knownEnvNames();
const SECRETS = ["DATABASE_URL", "TEMPORAL_ADDRESS", "AUTOMATA_ENCRYPTION_KEY", "AUTOMATA_ADMIN_TOKEN"];
const APP_SERVICES = ["migrate", "api", "worker"];

/** A service's environment as written (with compose's ${VAR:?…} / ${VAR:-default} references). */
function rawEnv(service: string): Record<string, string> {
  const raw = services[service]?.environment ?? {};
  if (Array.isArray(raw)) return Object.fromEntries(raw.map((line) => [line.split("=")[0]!, line.slice(line.indexOf("=") + 1)]));
  return Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, String(v ?? "")]));
}
/** As compose would interpolate it with nothing set: defaults apply, required values get a stand-in. */
function env(service: string): Record<string, string> {
  const interpolate = (value: string) =>
    value.replace(/\$\{([A-Z_][A-Z0-9_]*)(?::?([-?])([^}]*))?\}/g, (_m, name: string, op?: string, arg?: string) => (op === "-" ? (arg ?? "") : op === "?" ? `required-${name}` : ""));
  return Object.fromEntries(Object.entries(rawEnv(service)).map(([k, v]) => [k, interpolate(v)]));
}
function dependsOn(service: string): Record<string, string> {
  const raw = services[service]?.depends_on ?? {};
  if (Array.isArray(raw)) return Object.fromEntries(raw.map((name) => [name, "service_started"]));
  return Object.fromEntries(Object.entries(raw).map(([name, v]) => [name, v.condition]));
}
const script = (service: string) => [services[service]?.entrypoint, services[service]?.command].flat().filter(Boolean).join("\n");

test("the schema parser sees every key loadConfig returns", () => {
  for (const key of Object.keys(loadConfig({}))) if (key !== "homeDir") assert.ok(KNOWN.has(key), key);
  for (const name of ["PORT", "DATABASE_URL", "TEMPORAL_ADDRESS", "AUTOMATA_ENCRYPTION_KEY", "AUTOMATA_SHUTDOWN_GRACE", "AUTOMATA_WORKFLOW_BUNDLE"]) assert.ok(KNOWN.has(name), name);
});

test("compose: every service of the production-shaped stack exists", () => {
  for (const name of ["postgres", "temporal-schema", "temporal", "temporal-setup", "temporal-ui", "migrate", "api", "worker", "prometheus", "grafana"]) {
    assert.ok(services[name], `service ${name} missing`);
  }
});

test("compose: Temporal runs the server image on PostgreSQL, never the deprecated auto-setup image", () => {
  for (const [name, service] of Object.entries(services)) assert.doesNotMatch(service.image ?? "", /auto-setup/, name);
  assert.match(services.temporal!.image!, /^temporalio\/server:1\.29\.\d+$/);
  assert.match(services["temporal-schema"]!.image!, /^temporalio\/admin-tools:1\.29\.\d+/);
  assert.match(services["temporal-setup"]!.image!, /^temporalio\/admin-tools:1\.29\.\d+/);
  assert.match(services["temporal-ui"]!.image!, /^temporalio\/ui:/);
  const temporalEnv = env("temporal");
  assert.equal(temporalEnv.DB, "postgres12");
  assert.equal(temporalEnv.POSTGRES_SEEDS, "postgres");
  assert.equal(temporalEnv.DBNAME, "temporal");
  assert.equal(temporalEnv.VISIBILITY_DBNAME, "temporal_visibility");
  const dynamicConfig = temporalEnv.DYNAMIC_CONFIG_FILE_PATH!;
  const mount = services.temporal!.volumes!.find((v) => dynamicConfig.startsWith(v.split(":")[1]!))!;
  assert.ok(mount, "dynamic config directory is mounted");
  assert.ok(fs.existsSync(path.join(ROOT, mount.split(":")[0]!, path.basename(dynamicConfig))), "dynamic config file exists");
});

test("compose: the schema one-shot creates, sets up and updates both Temporal databases", () => {
  const text = script("temporal-schema");
  for (const needle of ["temporal-sql-tool", "--plugin postgres12", "create-database", "setup-schema -v 0.0", "update-schema -d", "temporal_visibility", "/etc/temporal/schema/postgresql/v12", "versioned"]) {
    assert.ok(text.includes(needle), `temporal-schema runs ${needle}`);
  }
  assert.equal(services["temporal-schema"]!.restart, "no");
});

test("compose: our search attributes are registered as Keyword after the server is healthy", () => {
  const text = script("temporal-setup");
  assert.match(text, /temporal operator search-attribute create/);
  assert.match(text, /--type Keyword/);
  for (const [name, type] of Object.entries(CUSTOM_SEARCH_ATTRIBUTES)) {
    assert.equal(type, "Keyword");
    assert.ok(text.includes(name), `registers ${name}`);
  }
  assert.match(text, /namespace create --namespace "?\$\$ns"?/);
  assert.match(text, /ns=default/);
  assert.equal(env("api").TEMPORAL_NAMESPACE ?? "default", "default");
});

test("compose: start order and health checks", () => {
  assert.equal(dependsOn("temporal-schema").postgres, "service_healthy");
  assert.equal(dependsOn("temporal")["temporal-schema"], "service_completed_successfully");
  assert.equal(dependsOn("temporal-setup").temporal, "service_healthy");
  assert.equal(dependsOn("temporal-ui").temporal, "service_healthy");
  assert.equal(dependsOn("migrate").postgres, "service_healthy");
  for (const name of ["api", "worker"]) {
    assert.equal(dependsOn(name).migrate, "service_completed_successfully", `${name} waits for migrations`);
    assert.equal(dependsOn(name)["temporal-setup"], "service_completed_successfully", `${name} waits for search attributes`);
  }
  assert.equal(dependsOn("grafana").prometheus, "service_healthy");
  for (const name of ["postgres", "temporal", "api", "worker", "prometheus", "grafana"]) assert.ok(services[name]!.healthcheck?.test, `${name} has a healthcheck`);
  assert.match(JSON.stringify(services.api!.healthcheck!.test), /\/readyz/);
  assert.match(JSON.stringify(services.worker!.healthcheck!.test), new RegExp(`:${loadConfig(env("worker")).AUTOMATA_METRICS_PORT}/`));
});

test("compose: our services run the image's entry points with known, complete environment", () => {
  assert.deepEqual(services.migrate!.command, ["node", "dist/src/cli/migrate.js"]);
  assert.deepEqual(services.api!.command, ["node", "dist/src/api.js"]);
  assert.deepEqual(services.worker!.command, ["node", "dist/src/worker.js"]);
  for (const name of APP_SERVICES) {
    assert.ok(services[name]!.build, `${name} is built from the Dockerfile`);
    const vars = rawEnv(name);
    for (const key of Object.keys(vars)) assert.ok(KNOWN.has(key), `${name}: ${key} is not a name the code reads`);
    for (const key of ["DATABASE_URL", "TEMPORAL_ADDRESS", "AUTOMATA_ENCRYPTION_KEY", "AUTOMATA_ADMIN_TOKEN"]) assert.ok(vars[key], `${name} sets ${key}`);
    assert.match(vars.AUTOMATA_ENCRYPTION_KEY!, /^\$\{AUTOMATA_ENCRYPTION_KEY:\?/, "the key comes from the environment and is required");
    assert.match(vars.AUTOMATA_ADMIN_TOKEN!, /^\$\{AUTOMATA_ADMIN_TOKEN:\?/, "the admin token comes from the environment and is required");
    assert.equal(vars.TEMPORAL_ADDRESS, "temporal:7233");
    assert.match(vars.DATABASE_URL!, /@postgres:5432\/automata_signal$/);
    // The values parse with the real configuration schema (secrets replaced by valid stand-ins).
    assert.doesNotThrow(() => loadConfig(env(name)), name);
  }
});

test("compose: ports match PORT and the metrics ports, and metrics are not published", () => {
  const api = loadConfig(env("api"));
  assert.ok(services.api!.ports!.includes(`${api.PORT}:${api.PORT}`), "API port published");
  assert.notEqual(api.AUTOMATA_API_METRICS_PORT, api.PORT, "the API's /metrics is on a port of its own");
  assert.ok(services.api!.expose!.includes(String(api.AUTOMATA_API_METRICS_PORT)), "API metrics reachable on the compose network");
  for (const [name, port] of [["api", api.AUTOMATA_API_METRICS_PORT], ["worker", loadConfig(env("worker")).AUTOMATA_METRICS_PORT]] as const) {
    const published = (services[name]!.ports ?? []).map((p) => p.split(":").at(-1));
    assert.ok(!published.includes(String(port)), `${name} metrics not published on the host`);
  }
  const worker = loadConfig(env("worker"));
  assert.equal(worker.AUTOMATA_METRICS_PORT, 9464);
  assert.equal(worker.AUTOMATA_TEMPORAL_METRICS_ADDRESS, "0.0.0.0:9465", "SDK exporter reachable from other containers");
  assert.ok(services.worker!.expose!.includes(String(worker.AUTOMATA_METRICS_PORT)));
  assert.ok(services.worker!.expose!.includes("9465"));
  assert.equal(env("temporal").PROMETHEUS_ENDPOINT, "0.0.0.0:8000");
});

test("compose: only the API is published on every interface; PostgreSQL, Temporal (gRPC and UI: no auth, full control of every tenant's workflows), Prometheus and Grafana on loopback", () => {
  const published = Object.entries(services).flatMap(([name, service]) => (service.ports ?? []).map((port) => [name, port] as const));
  assert.deepEqual(published.filter(([, port]) => !port.startsWith("127.0.0.1:")).map(([name]) => name), ["api"]);
  for (const port of ["127.0.0.1:5432:5432", "127.0.0.1:7233:7233", "127.0.0.1:8233:8080", "127.0.0.1:9090:9090", "127.0.0.1:3000:3000"]) {
    assert.ok(published.some(([, p]) => p === port), port);
  }
});

test("compose: SIGKILL comes only after the worker's shutdown grace", () => {
  const grace = loadConfig(env("worker")).AUTOMATA_SHUTDOWN_GRACE;
  assert.ok(parseDuration(services.worker!.stop_grace_period!) > grace + LONGEST_SEND_CHUNK_MS, "worker stop_grace_period > AUTOMATA_SHUTDOWN_GRACE + a send chunk in flight");
  assert.ok(parseDuration(services.api!.stop_grace_period!) >= 10_000, "the API has time to drain");
});

test("prometheus scrapes the API, the worker and the Temporal server", () => {
  const targets = prometheus.scrape_configs.flatMap((job) => job.static_configs.flatMap((c) => c.targets.map((t) => `${t}${job.metrics_path ?? "/metrics"}`)));
  const apiPort = loadConfig(env("api")).AUTOMATA_API_METRICS_PORT;
  const workerPort = loadConfig(env("worker")).AUTOMATA_METRICS_PORT;
  assert.ok(targets.includes(`api:${apiPort}/metrics`), "api");
  assert.ok(targets.includes(`worker:${workerPort}/metrics`), "worker (its /metrics includes the Temporal SDK's)");
  assert.ok(targets.includes(`temporal:${env("temporal").PROMETHEUS_ENDPOINT!.split(":")[1]}/metrics`), "temporal server");
  assert.ok(!targets.includes("worker:9465/metrics"), "SDK metrics are not scraped twice");
  assert.ok(services.prometheus!.volumes!.some((v) => v.startsWith("./deploy/prometheus.yml:")));
});

test("grafana is provisioned with the Prometheus datasource and the dashboards folder", () => {
  const datasources = parseYaml(read("deploy/grafana/provisioning/datasources/prometheus.yml")) as { datasources: { type: string; url: string; uid: string }[] };
  assert.equal(datasources.datasources[0]!.type, "prometheus");
  assert.equal(datasources.datasources[0]!.url, "http://prometheus:9090");
  const providers = parseYaml(read("deploy/grafana/provisioning/dashboards/automata-signal.yml")) as { providers: { options: { path: string } }[] };
  const dashboardPath = providers.providers[0]!.options.path;
  const volumes = services.grafana!.volumes!;
  assert.ok(volumes.some((v) => v.startsWith("./deploy/grafana/provisioning:/etc/grafana/provisioning")));
  assert.ok(volumes.some((v) => v.startsWith(`./dashboards:${dashboardPath}`)), "dashboards/ is mounted where the provider reads");
});

test("fly.toml: api and worker from one image, health check, metrics, shutdown, release command", () => {
  const processes = fly.processes as Record<string, string>;
  assert.equal(processes.api, "node dist/src/api.js");
  assert.equal(processes.worker, "node dist/src/worker.js");
  assert.equal((fly.build as Json).dockerfile, "Dockerfile");
  assert.equal(fly.primary_region, "nrt");
  assert.equal((fly.deploy as Json).release_command, "node dist/src/cli/migrate.js");
  // Nothing wakes a stopped worker (it serves no traffic): fly must restart it however it exited.
  const restarts = ([] as Json[]).concat((fly.restart as Json | Json[] | undefined) ?? []);
  assert.ok(restarts.some((r) => r.policy === "always" && (r.processes as string[]).includes("worker")), "workers restart always");

  const flyEnv = fly.env as Record<string, string>;
  for (const key of Object.keys(flyEnv)) assert.ok(KNOWN.has(key), `[env] ${key} is not a name the code reads`);
  for (const secret of SECRETS) assert.ok(!(secret in flyEnv), `${secret} belongs in fly secrets, not [env]`);
  assert.doesNotMatch(read("fly.toml"), /postgres(ql)?:\/\/[^\s"]*:[^\s"]*@/, "no credentials in fly.toml");
  const config = loadConfig(flyEnv);

  const http = fly.http_service as Json & { checks: Json[]; processes: string[] };
  assert.deepEqual(http.processes, ["api"]);
  assert.equal(http.internal_port, config.PORT);
  // Routing must not depend on the worker group (/readyz fails while no worker polls).
  assert.ok(http.checks.some((check) => check.path === "/healthz"), "API routing check on /healthz");
  assert.ok(!http.checks.some((check) => check.path === "/readyz"), "not /readyz");

  const metrics = ([] as Json[]).concat(fly.metrics as Json | Json[]);
  // The public proxy routes http_service's port: /metrics (unauthenticated) must be elsewhere.
  assert.notEqual(config.AUTOMATA_API_METRICS_PORT, http.internal_port);
  assert.notEqual(config.AUTOMATA_API_METRICS_PORT, config.AUTOMATA_METRICS_PORT, "an API and a worker on one host do not clash");
  assert.ok(metrics.some((m) => m.port === config.AUTOMATA_API_METRICS_PORT && m.path === "/metrics" && (m.processes as string[]).includes("api")), "API metrics");
  assert.ok(!metrics.some((m) => m.port === http.internal_port), "nothing scraped on the public port");
  assert.ok(metrics.some((m) => m.port === config.AUTOMATA_METRICS_PORT && m.path === "/metrics" && (m.processes as string[]).includes("worker")), "worker metrics");

  const killTimeout = typeof fly.kill_timeout === "number" ? fly.kill_timeout * 1000 : parseDuration(String(fly.kill_timeout));
  assert.ok(killTimeout > config.AUTOMATA_SHUTDOWN_GRACE + LONGEST_SEND_CHUNK_MS, `kill_timeout ${killTimeout} ms > AUTOMATA_SHUTDOWN_GRACE ${config.AUTOMATA_SHUTDOWN_GRACE} ms + a send chunk in flight`);
  assert.ok(killTimeout <= 300_000, "fly caps kill_timeout at 5 minutes");
});

test("Dockerfile: multi-stage, prebuilt workflow bundle, non-root, only known env names", () => {
  const dockerfile = read("Dockerfile");
  assert.ok((dockerfile.match(/^FROM /gm) ?? []).length >= 2, "multi-stage");
  assert.match(dockerfile, /npm ci/);
  assert.match(dockerfile, /npm prune --omit=dev/);
  assert.match(dockerfile, /node dist\/src\/cli\/bundle-workflows\.js dist\/workflow-bundle\.js/);
  assert.match(dockerfile, /AUTOMATA_WORKFLOW_BUNDLE=\/app\/dist\/workflow-bundle\.js/);
  const lastUser = [...dockerfile.matchAll(/^USER (\S+)/gm)].pop();
  assert.ok(lastUser && lastUser[1] !== "root" && lastUser[1] !== "0", "runs as a non-root user");
  const runtimeStage = dockerfile.slice(dockerfile.lastIndexOf("\nFROM "));
  for (const match of runtimeStage.matchAll(/^ENV ([\s\S]*?)(?<!\\)\n/gm)) {
    for (const pair of match[1]!.split(/\s+\\?\s*/)) {
      const name = pair.split("=")[0]!;
      if (/^[A-Z][A-Z0-9_]*$/.test(name)) assert.ok(KNOWN.has(name), `Dockerfile ENV ${name} is not a name the code reads`);
    }
  }
  const ignore = read(".dockerignore");
  for (const entry of ["node_modules", "dist", ".env", ".automata"]) assert.match(ignore, new RegExp(`^${entry.replace(".", "\\.")}$`, "m"), `.dockerignore has ${entry}`);
});
