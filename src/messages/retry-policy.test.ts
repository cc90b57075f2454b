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
  // A Retry-After lengthens the planned delay, never shortens it (retries are counted)...
  [["rate_limited", 1, 1, 1_000], 60_000],
  [["rate_limited", 3, 1, 7_000], 300_000],
  [["rate_limited", 1, 1, 90_000], 90_000],
  [["rate_limited", 4, 1, 1_000], undefined],
  [["rate_limited", 1, 1, 10 * 3_600_000], 3_600_000],
  // ...for an outage too (APNs and FCM send it with 503s), up to an hour.
  [["provider_outage", 1, 1, 1_800_000], 1_800_000],
  [["provider_outage", 1, 1, 60_000], 900_000],
  [["provider_outage", 2, 1, 10 * 3_600_000], 3_600_000],
  [["network", 1, 1, 120_000], 120_000],
  // Workflows started before the floor replay the old rule: a rate limit's Retry-After replaced
  // the schedule, other classes ignored it.
  [["rate_limited", 1, 1, 1_000, 0, true], 1_000],
  [["rate_limited", 3, 1, 7_000, 0, true], 7_000],
  [["provider_outage", 1, 1, 1_800_000, 0, true], 900_000],
  [["network", 1, 0.001], 30],
  [["provider_outage", 1, 0.0001], 90],
  [["network", 1, 0], 1],
  // Jitter only lengthens, by up to 20 %, also a provider's Retry-After.
  [["network", 1, 1, undefined, 0.5], 33_000],
  [["network", 1, 1, undefined, 0.999], 35_994],
  [["rate_limited", 1, 1, 100_000, 0.25], 105_000],
  [["network", 5, 1, undefined, 0.5], undefined],
  // Out-of-range jitter is clamped (never shortens, never more than 20 %).
  [["network", 1, 1, undefined, -1], 30_000],
  [["network", 1, 1, undefined, 7], 36_000],
];

for (const [args, expected] of cases) {
  test(`nextRetryDelay(${args.join(", ")}) = ${expected}`, () => {
    assert.equal(nextRetryDelay(...args), expected);
  });
}

test("jitter spreads retries that failed together: 1,000 draws cover [delay, 1.2 × delay) and none is shorter", () => {
  const delays = Array.from({ length: 1_000 }, () => nextRetryDelay("rate_limited", 1, 1, 60_000, Math.random())!);
  assert.ok(delays.every((d) => d >= 60_000 && d < 72_000));
  assert.ok(new Set(delays).size > 500, "the wake-ups are spread, not one instant");
});

test("tries in all: network 5, provider outage 24 (6 h at 15 min), rate limited 4 (3 retries)", () => {
  assert.equal(RETRY_SCHEDULES.network.length + 1, 5);
  assert.equal(RETRY_SCHEDULES.provider_outage.length + 1, 24);
  assert.equal(RETRY_SCHEDULES.provider_outage.reduce((a, b) => a + b, 0), 23 * 15 * 60_000);
  assert.equal(RETRY_SCHEDULES.rate_limited.length, 3);
});
