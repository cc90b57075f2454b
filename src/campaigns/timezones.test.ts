import { test } from "node:test";
import assert from "node:assert/strict";
import { deliveryGroups, isValidTimeZone, nextLocalTime } from "./timezones";

test("nextLocalTime: the first instant at or after `from` when the zone's clock reads local_time", () => {
  const cases: Array<[from: string, zone: string, local: string, expected: string, why: string]> = [
    ["2026-11-22T00:00:00Z", "Asia/Seoul", "09:00", "2026-11-22T00:00:00.000Z", "exactly now counts"],
    ["2026-11-22T00:00:01Z", "Asia/Seoul", "09:00", "2026-11-23T00:00:00.000Z", "just passed: tomorrow"],
    ["2026-11-22T00:00:00Z", "Asia/Seoul", "09:00:30", "2026-11-22T00:00:30.000Z", "seconds are honoured"],
    ["2026-11-22T00:00:00Z", "America/New_York", "09:00", "2026-11-22T14:00:00.000Z", "EST is UTC-5 in November"],
    ["2026-07-01T00:00:00Z", "America/New_York", "09:00", "2026-07-01T13:00:00.000Z", "EDT is UTC-4 in July"],
    ["2026-03-08T06:00:00Z", "America/New_York", "02:30", "2026-03-08T07:30:00.000Z", "a time skipped by DST moves past the jump"],
    ["2026-11-01T04:00:00Z", "America/New_York", "01:30", "2026-11-01T05:30:00.000Z", "a repeated time takes its first occurrence"],
    ["2026-11-22T23:00:00Z", "UTC", "00:00", "2026-11-23T00:00:00.000Z", "midnight rolls to the next day"],
  ];
  for (const [from, zone, local, expected, why] of cases) {
    assert.equal(nextLocalTime(new Date(from), zone, local).toISOString(), expected, why);
  }
  assert.throws(() => nextLocalTime(new Date(), "UTC", "24:00"), /invalid local time/);
});

test("isValidTimeZone accepts IANA names only", () => {
  for (const zone of ["Asia/Seoul", "UTC", "America/Argentina/Buenos_Aires"]) assert.equal(isValidTimeZone(zone), true, zone);
  for (const zone of ["Mars/Base", "", "KST+9"]) assert.equal(isValidTimeZone(zone), false, zone);
});

test("deliveryGroups: zones sharing an instant share a group; unset and invalid zones use the fallback", () => {
  const from = new Date("2026-11-22T00:00:00Z");
  const groups = deliveryGroups(["Asia/Seoul", "Asia/Tokyo", null, "Mars/Base", "Europe/London"], "UTC", "09:00", from);
  assert.deepEqual(groups, [
    { sendAt: Date.parse("2026-11-22T00:00:00Z"), timezones: ["Asia/Seoul", "Asia/Tokyo"], includesUnset: false },
    // London is UTC+0 in November, so it shares the fallback's (UTC) instant.
    { sendAt: Date.parse("2026-11-22T09:00:00Z"), timezones: ["Mars/Base", "Europe/London"], includesUnset: true },
  ]);
});

test("deliveryGroups: no fallback group when nobody needs it; empty audience, no groups", () => {
  const from = new Date("2026-11-22T00:00:00Z");
  assert.deepEqual(deliveryGroups(["Asia/Seoul"], "UTC", "09:00", from), [{ sendAt: Date.parse("2026-11-22T00:00:00Z"), timezones: ["Asia/Seoul"], includesUnset: false }]);
  assert.deepEqual(deliveryGroups([], "UTC", "09:00", from), []);
});
