import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { loadConfig } from "../config";

const USAGE = `usage: automata <command> [options]

commands:
  apps create --name <name> [--daily-quota N] [--monthly-quota N] [--tier basic|premium|enterprise] [--timezone Area/City]
  apps get <application-id>
  apps list
  apps rotate-key <application-id> [--grace-seconds N]

options:
  --api <url>      API base URL (default http://localhost:$PORT, PORT defaults to 8080)
  --token <token>  admin token (default $AUTOMATA_ADMIN_TOKEN or the one npm start generated)`;

/** Calls the local admin API with the operator's token and prints the JSON answer. */
async function callAdmin(apiUrl: string, token: string, method: string, urlPath: string, body?: unknown): Promise<number> {
  const response = await fetch(`${apiUrl}/api/v1${urlPath}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  console.log(JSON.stringify(JSON.parse(text), null, 2));
  return response.ok ? 0 : 1;
}

async function main(argv: string[]): Promise<number> {
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
      api: { type: "string" },
      token: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  const [group, command, id] = positionals;
  if (values.help || group !== "apps" || !command) {
    console.log(USAGE);
    return values.help ? 0 : 2;
  }
  const config = loadConfig();
  const apiUrl = values.api ?? process.env.AUTOMATA_API_URL ?? `http://localhost:${config.PORT}`;
  const tokenFile = path.join(config.homeDir, "admin-token");
  const token = values.token ?? config.AUTOMATA_ADMIN_TOKEN ?? (fs.existsSync(tokenFile) ? fs.readFileSync(tokenFile, "utf8").trim() : undefined);
  if (!token) {
    console.error("no admin token: pass --token, set AUTOMATA_ADMIN_TOKEN, or run `npm start` first");
    return 2;
  }
  const quota = {
    ...(values["daily-quota"] ? { daily_quota: Number(values["daily-quota"]) } : {}),
    ...(values["monthly-quota"] ? { monthly_quota: Number(values["monthly-quota"]) } : {}),
  };
  switch (command) {
    case "create":
      if (!values.name) {
        console.error("apps create needs --name");
        return 2;
      }
      return callAdmin(apiUrl, token, "POST", "/admin/applications", {
        name: values.name,
        ...(Object.keys(quota).length > 0 ? { quota } : {}),
        ...(values.tier ? { rate_limit_tier: values.tier } : {}),
        ...(values.timezone ? { timezone: values.timezone } : {}),
      });
    case "get":
      return id ? callAdmin(apiUrl, token, "GET", `/admin/applications/${id}`) : (console.error("apps get needs an id"), 2);
    case "list":
      return callAdmin(apiUrl, token, "GET", "/admin/applications");
    case "rotate-key":
      return id
        ? callAdmin(apiUrl, token, "POST", `/admin/applications/${id}/api-keys`, { grace_period_seconds: Number(values["grace-seconds"] ?? 0) })
        : (console.error("apps rotate-key needs an id"), 2);
    default:
      console.log(USAGE);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(String((error as Error).message ?? error));
    process.exit(1);
  },
);
