import { test } from "node:test";
import assert from "node:assert/strict";
import { untilDatabaseAnswers, isDatabaseUnavailable, isTransientConflict } from "./availability";

const named = (name: string, message = "x") => Object.assign(new Error(message), { name });
const coded = (code: string, message = "x") => Object.assign(new Error(message), { code });

test("isDatabaseUnavailable: outages and saturation yes, request and schema errors no", () => {
  const cases: Array<[string, unknown, boolean]> = [
    ["knex pool acquire timeout", named("KnexTimeoutError", "Knex: Timeout acquiring a connection."), true],
    ["connection refused", coded("ECONNREFUSED"), true],
    ["connection reset", coded("ECONNRESET"), true],
    ["host name gone while its container restarts", coded("ENOTFOUND", "getaddrinfo ENOTFOUND postgres"), true],
    ["Unix socket of a stopped server", Object.assign(coded("ENOENT"), { syscall: "connect" }), true],
    ["a missing file is not the database", Object.assign(coded("ENOENT"), { syscall: "open" }), false],
    ["class 08: connection failure", coded("08006"), true],
    ["admin shutdown", coded("57P01"), true],
    ["cannot connect now (starting up)", coded("57P03"), true],
    ["too many connections", coded("53300"), true],
    ["socket closed mid-query", new Error("Connection terminated unexpectedly"), true],
    ["socket closed mid-query, as knex words it", new Error('select * from "messages" where "id" = $1 limit $2 - Connection terminated unexpectedly'), true],
    ["socket closed in a transaction: knex answers the failed ROLLBACK", new Error("ROLLBACK - Connection terminated unexpectedly"), true],
    ["connection reset in a transaction: the client is no longer queryable", new Error("ROLLBACK - Client has encountered a connection error and is not queryable"), true],
    ["a failover's read-only node", coded("25006"), true],
    ["a column named like the message is still a bug", new Error('column "connection terminated" does not exist'), false],
    ["protocol violation (too many bind parameters: a bug)", coded("08P01"), false],
    ["unique violation", coded("23505"), false],
    ["undefined column (a bug)", coded("42703"), false],
    ["statement timeout", coded("57014"), false],
    ["a plain error", new Error("boom"), false],
    ["not an error", "ECONNREFUSED", false],
    ["null", null, false],
  ];
  for (const [name, error, expected] of cases) assert.equal(isDatabaseUnavailable(error), expected, name);
});

test("isTransientConflict: lost races a retry resolves yes, outages and bugs no", () => {
  const cases: Array<[string, unknown, boolean]> = [
    ["deadlock", coded("40P01"), true],
    ["serialization failure", coded("40001"), true],
    ["lock_timeout expired (a cancel behind a slow send)", coded("55P03"), true],
    ["unique violation (the route's own conflict handling decides)", coded("23505"), false],
    ["statement timeout", coded("57014"), false],
    ["connection refused (unavailable, not a conflict)", coded("ECONNREFUSED"), false],
    ["a plain error", new Error("boom"), false],
    ["null", null, false],
  ];
  for (const [name, error, expected] of cases) assert.equal(isTransientConflict(error), expected, name);
});

test("untilDatabaseAnswers: retries an unavailable database with doubling waits up to the cap, and throws anything else at once", async () => {
  const waits: number[] = [];
  const sleep = async (ms: number) => void waits.push(ms);
  let calls = 0;
  const answer = await untilDatabaseAnswers(
    async () => {
      calls += 1;
      if (calls <= 5) throw calls % 2 === 0 ? coded("ECONNREFUSED") : coded("57P03");
      return "ready";
    },
    { initialDelayMs: 100, maxDelayMs: 500, sleep },
  );
  assert.equal(answer, "ready");
  assert.deepEqual(waits, [100, 200, 400, 500, 500]);

  const cases: Array<[string, unknown]> = [
    ["a wrong encryption key", new Error("the encryption key does not match")],
    ["a schema error", coded("42P01")],
  ];
  for (const [name, error] of cases) {
    let tries = 0;
    await assert.rejects(
      untilDatabaseAnswers(async () => {
        tries += 1;
        throw error;
      }, { sleep }),
      (thrown: unknown) => thrown === error,
      name,
    );
    assert.equal(tries, 1, name);
  }
});
