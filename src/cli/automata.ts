import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { loadConfig } from "../config";

const USAGE = `usage: automata <command> [options]

commands:
  apps create --name <name> [--daily-quota N] [--monthly-quota N] [--tier basic|premium|enterprise] [--timezone Area/City]
  apps get <application-id>
  apps list [--page N] [--per-page N]      newest first, 20 a page unless --per-page (at most 100)
  apps rotate-key <application-id> [--grace-seconds N]   default 0: the previous keys stop working now

options:
  --api <url>      API server URL, with or without /api/v1 (default $AUTOMATA_API_URL, else http://localhost:$PORT, PORT defaults to 8080)
  --token <token>  admin token (default $AUTOMATA_ADMIN_TOKEN or the one npm start generated)
  -h, --help       this text

exit status: 0 done, 1 the API refused or could not be reached, 2 a usage error (nothing was sent)`;

/** Exit code of a command line the CLI cannot run as written (unknown option, bad number, missing id). */
const USAGE_ERROR = 2;

/** A mistake in the command line: reported with the usage text and USAGE_ERROR, nothing is called. */
class UsageError extends Error {}

/**
 * A count option as a non-negative integer. Number() alone turns "5k" into NaN, which
 * JSON.stringify sends as null: for a quota that means unlimited, the opposite of what was typed.
 */
function countOption(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw new UsageError(`--${name} must be a whole number of 0 or more, got "${value}"`);
  return Number(value);
}

/** Calls the local admin API with the operator's token and prints the JSON answer. */
async function callAdmin(apiUrl: string, token: string, method: string, urlPath: string, body?: unknown): Promise<number> {
  const url = `${apiUrl}/api/v1${urlPath}`;
  let response: Response;
  try {
    response = await fetch(url, {
      method,
      headers: { Authorization: `Bearer ${token}`, ...(body ? { "Content-Type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch (error) {
    // fetch says only "fetch failed"; the cause (ECONNREFUSED, ENOTFOUND …) is what an operator can act on.
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    console.error(`cannot reach the API at ${apiUrl}: ${cause?.code ?? cause?.message ?? (error as Error).message} (pass --api or set AUTOMATA_API_URL)`);
    return 1;
  }
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    // Not our API (a proxy's HTML error page, the worker's metrics port …): say so instead of a JSON SyntaxError.
    console.error(`${method} ${url} answered HTTP ${response.status} without a JSON body; is --api the Automata-Signal API?\n${text.slice(0, 500)}`);
    return 1;
  }
  console.log(JSON.stringify(json, null, 2));
  return response.ok ? 0 : 1;
}

async function main(argv: string[]): Promise<number> {
  try {
    return await run(argv);
  } catch (error) {
    // parseArgs rejects unknown options and missing values with ERR_PARSE_ARGS_*: a usage error too.
    const code = (error as { code?: string }).code;
    if (error instanceof UsageError || (typeof code === "string" && code.startsWith("ERR_PARSE_ARGS_"))) {
      console.error(`${(error as Error).message}\n\n${USAGE}`);
      return USAGE_ERROR;
    }
    throw error;
  }
}

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      name: { type: "string" },
      "daily-quota": { type: "string" },
      "monthly-quota": { type: "string" },
      tier: { type: "string" },
      timezone: { type: "string" },
      "grace-seconds": { type: "string" },
      page: { type: "string" },
      "per-page": { type: "string" },
      api: { type: "string" },
      token: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  const [group, command, id] = positionals;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (group !== "apps" || !command) throw new UsageError(group === undefined ? "no command given" : `unknown command "${[group, command].filter(Boolean).join(" ")}"`);
  // `apps create --name My App` would otherwise create "My" and drop "App" without a word.
  const positionalsTaken: Record<string, number> = { create: 2, list: 2, get: 3, "rotate-key": 3 };
  const extra = command in positionalsTaken ? positionals.slice(positionalsTaken[command]) : [];
  if (extra.length > 0) throw new UsageError(`unexpected argument(s) ${extra.map((a) => JSON.stringify(a)).join(" ")} (quote a value that has spaces)`);
  const quota = {
    ...(values["daily-quota"] !== undefined ? { daily_quota: countOption("daily-quota", values["daily-quota"]) } : {}),
    ...(values["monthly-quota"] !== undefined ? { monthly_quota: countOption("monthly-quota", values["monthly-quota"]) } : {}),
  };
  const graceSeconds = countOption("grace-seconds", values["grace-seconds"]) ?? 0;
  // The list is paged by the API: without these an operator could never see past the first 20.
  const listQuery = new URLSearchParams();
  if (values.page !== undefined) listQuery.set("page", String(countOption("page", values.page)));
  if (values["per-page"] !== undefined) listQuery.set("per_page", String(countOption("per-page", values["per-page"])));
  const config = loadConfig();
  // The banner and README call http://…/api/v1 "the API": accept it as well as the server root.
  const apiUrl = (values.api ?? process.env.AUTOMATA_API_URL ?? `http://localhost:${config.PORT}`).replace(/\/+$/, "").replace(/\/api\/v1$/, "");
  const tokenFile = path.join(config.homeDir, "admin-token");
  const token = values.token ?? config.AUTOMATA_ADMIN_TOKEN ?? (fs.existsSync(tokenFile) ? fs.readFileSync(tokenFile, "utf8").trim() : undefined);
  if (!token) {
    console.error("no admin token: pass --token, set AUTOMATA_ADMIN_TOKEN, or run `npm start` first");
    return 2;
  }
  switch (command) {
    case "create":
      if (!values.name) throw new UsageError("apps create needs --name");
      return callAdmin(apiUrl, token, "POST", "/admin/applications", {
        name: values.name,
        ...(Object.keys(quota).length > 0 ? { quota } : {}),
        ...(values.tier ? { rate_limit_tier: values.tier } : {}),
        ...(values.timezone ? { timezone: values.timezone } : {}),
      });
    case "get":
      if (!id) throw new UsageError("apps get needs an application id");
      // Encoded: an id containing a slash or a query mark stays this route's one path segment.
      return callAdmin(apiUrl, token, "GET", `/admin/applications/${encodeURIComponent(id)}`);
    case "list":
      return callAdmin(apiUrl, token, "GET", `/admin/applications${listQuery.size > 0 ? `?${listQuery}` : ""}`);
    case "rotate-key":
      if (!id) throw new UsageError("apps rotate-key needs an application id");
      return callAdmin(apiUrl, token, "POST", `/admin/applications/${encodeURIComponent(id)}/api-keys`, { grace_period_seconds: graceSeconds });
    default:
      throw new UsageError(`unknown command "apps ${command}"`);
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(String((error as Error).message ?? error));
    process.exit(1);
  },
);
