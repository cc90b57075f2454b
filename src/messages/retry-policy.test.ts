import { test } from "node:test";
import assert from "node:assert/strict";
import { nextRetryDelay, RETRY_SCHEDULES } from "./retry-policy";

const cases: Array<[Parameters<typeof nextRetryDelay>, number | undefined]> = [
  [["network", 1], 30_000],
  [["network", 2], 120_000],
  [["network", 3], 300_000],
  [["network", 4], 900_000],
  [["network", 5], undefined],
  [["provider_outage", 1], 900_000],
  [["provider_outage", 23], 900_000],
  [["provider_outage", 24], undefined],
  [["rate_limited", 1], 60_000],
  [["rate_limited", 1, 1, 1_000], 1_000],
  [["rate_limited", 3, 1, 7_000], 7_000],
  [["rate_limited", 4, 1, 1_000], undefined],
  [["rate_limited", 1, 1, 10 * 3_600_000], 3_600_000],
  [["network", 1, 0.001], 30],
  [["provider_outage", 1, 0.0001], 90],
  [["network", 1, 0], 1],
];

for (const [args, expected] of cases) {
  test(`nextRetryDelay(${args.join(", ")}) = ${expected}`, () => {
    assert.equal(nextRetryDelay(...args), expected);
  });
}

test("tries in all: network 5, provider outage 24 (6 h at 15 min), rate limited 4 (3 retries)", () => {
  assert.equal(RETRY_SCHEDULES.network.length + 1, 5);
  assert.equal(RETRY_SCHEDULES.provider_outage.length + 1, 24);
  assert.equal(RETRY_SCHEDULES.provider_outage.reduce((a, b) => a + b, 0), 23 * 15 * 60_000);
  assert.equal(RETRY_SCHEDULES.rate_limited.length, 3);
});
