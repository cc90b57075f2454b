import { test } from "node:test";
import assert from "node:assert/strict";
import { loadConfig, parseDuration } from "./config";

const durations: Array<[string, number | RegExp]> = [
  ["72h", 259_200_000],
  ["250ms", 250],
  ["1.5s", 1_500],
  ["0", 0],
  // A bare number used to be milliseconds: "72" meant as hours timed every receipt out at once.
  ["72", /needs a unit/],
  ["15 minutes", /invalid duration/],
  ["", /invalid duration/],
];

for (const [value, expected] of durations) {
  test(`parseDuration(${JSON.stringify(value)})`, () => {
    if (typeof expected === "number") assert.equal(parseDuration(value), expected);
    else assert.throws(() => parseDuration(value), expected);
  });
}

const refused: Array<[Record<string, string>, RegExp]> = [
  [{ AUTOMATA_RECEIPT_TIMEOUT: "259200" }, /AUTOMATA_RECEIPT_TIMEOUT: duration "259200" needs a unit/],
  [{ AUTOMATA_PENDING_TIMEOUT: "500ms" }, /AUTOMATA_PENDING_TIMEOUT: "500ms" is below the minimum/],
  [{ AUTOMATA_CAMPAIGN_STATUS_POLL: "0" }, /AUTOMATA_CAMPAIGN_STATUS_POLL/],
  // PostgreSQL refuses every connection whose statement_timeout is above 2^31-1 ms.
  [{ AUTOMATA_API_STATEMENT_TIMEOUT: "30d" }, /AUTOMATA_API_STATEMENT_TIMEOUT: "30d" is above the maximum/],
  // express reads "1m" as 1 byte: every request with a body would be 413.
  [{ AUTOMATA_MAX_BODY: "1m" }, /AUTOMATA_MAX_BODY: use bytes with a unit/],
  [{ AUTOMATA_MAX_BODY: "256k" }, /AUTOMATA_MAX_BODY/],
];

for (const [env, expected] of refused) {
  test(`loadConfig refuses ${JSON.stringify(env)} at start`, () => {
    assert.throws(() => loadConfig(env), expected);
  });
}

test("accepted values: units, a body size in kb/mb, statement timeout 0 (off)", () => {
  const config = loadConfig({ AUTOMATA_RECEIPT_TIMEOUT: "3s", AUTOMATA_MAX_BODY: "1mb", AUTOMATA_API_STATEMENT_TIMEOUT: "0" });
  assert.equal(config.AUTOMATA_RECEIPT_TIMEOUT, 3_000);
  assert.equal(config.AUTOMATA_MAX_BODY, "1mb");
  assert.equal(config.AUTOMATA_API_STATEMENT_TIMEOUT, 0);
});

test("an empty value is unset (its default applies), except where empty means something", () => {
  const config = loadConfig({ PORT: "", DATABASE_URL: "", AUTOMATA_WORKER_CACHED_WORKFLOWS: "", AUTOMATA_TEMPORAL_METRICS_ADDRESS: "" });
  assert.equal(config.PORT, 8080, "not port 0 (a random port)");
  assert.equal(config.DATABASE_URL, undefined, "npm start then uses its embedded PostgreSQL");
  assert.equal(config.AUTOMATA_WORKER_CACHED_WORKFLOWS, 250, "not 0 (cache off)");
  assert.equal(config.AUTOMATA_TEMPORAL_METRICS_ADDRESS, "", "empty disables the SDK exporter");
});
