import { test } from "node:test";
import { DateTime } from "luxon";
import assert from "node:assert/strict";
import { deliveryGroups, deliveryPlanningStart, nextLocalTime, sameLocalWallTime } from "./timezones";

test("nextLocalTime: the first instant at or after `from` when the zone's clock reads local_time", () => {
  const cases: Array<[from: string, zone: string, local: string, expected: string, why: string]> = [
    ["2026-11-22T00:00:00Z", "Asia/Seoul", "09:00", "2026-11-22T00:00:00.000Z", "exactly now counts"],
    ["2026-11-22T00:00:01Z", "Asia/Seoul", "09:00", "2026-11-23T00:00:00.000Z", "just passed: tomorrow"],
    ["2026-11-22T00:00:00Z", "Asia/Seoul", "09:00:30", "2026-11-22T00:00:30.000Z", "seconds are honoured"],
    ["2026-11-22T00:00:00Z", "America/New_York", "09:00", "2026-11-22T14:00:00.000Z", "EST is UTC-5 in November"],
    ["2026-07-01T00:00:00Z", "America/New_York", "09:00", "2026-07-01T13:00:00.000Z", "EDT is UTC-4 in July"],
    ["2026-03-08T06:00:00Z", "America/New_York", "02:30", "2026-03-08T07:30:00.000Z", "a time skipped by DST moves past the jump"],
    ["2026-11-01T04:00:00Z", "America/New_York", "01:30", "2026-11-01T05:30:00.000Z", "a repeated time takes its first occurrence"],
    // Not the second occurrence 45 min later: a recurring run the day before may have sent the first.
    ["2026-11-01T05:45:00Z", "America/New_York", "01:30", "2026-11-02T06:30:00.000Z", "between its two occurrences: the next day's, one instant per local date"],
    ["2026-11-22T23:00:00Z", "UTC", "00:00", "2026-11-23T00:00:00.000Z", "midnight rolls to the next day"],
    // Nuuk jumps 23:00 → 00:00 on 2026-03-28: from 23:30 on the 27th, the next 09:00 is the 28th's, not the 29th's.
    ["2026-03-28T01:30:00Z", "America/Nuuk", "09:00", "2026-03-28T11:00:00.000Z", "a DST jump across midnight does not skip a day"],
  ];
  for (const [from, zone, local, expected, why] of cases) {
    assert.equal(nextLocalTime(new Date(from), zone, local).toISOString(), expected, why);
  }
  assert.throws(() => nextLocalTime(new Date(), "UTC", "24:00"), /invalid local time/);
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

test("deliveryPlanningStart: the nominal start when it passed within the grace, else now", () => {
  const now = new Date("2026-12-07T00:00:00.300Z");
  const grace = 10 * 60_000;
  const cases: Array<[nominal: string | null, expected: string, why: string]> = [
    [null, "2026-12-07T00:00:00.300Z", "no nominal start: now"],
    ["2026-12-07T00:00:00.000Z", "2026-12-07T00:00:00.000Z", "a fire 300 ms ago: the fire time, so zones at the fire time send now"],
    ["2026-12-06T23:55:00.000Z", "2026-12-06T23:55:00.000Z", "five minutes late (within the catch-up window)"],
    ["2026-12-06T20:00:00.000Z", "2026-12-06T23:50:00.300Z", "hours late: only the grace, older local times wait for tomorrow"],
    ["2026-12-07T06:00:00.000Z", "2026-12-07T00:00:00.300Z", "executed ahead of its scheduled time: now"],
  ];
  for (const [nominal, expected, why] of cases) {
    assert.equal(deliveryPlanningStart(nominal === null ? null : new Date(nominal), now, grace).toISOString(), expected, why);
  }
  // The bug this prevents: planned 300 ms after a 09:00 KST fire, Seoul's 09:00 was tomorrow.
  const fire = new Date("2026-12-07T00:00:00Z");
  const [seoul] = deliveryGroups(["Asia/Seoul"], "UTC", "09:00", deliveryPlanningStart(fire, now, grace));
  assert.equal(new Date(seoul!.sendAt).toISOString(), "2026-12-07T00:00:00.000Z");
});

test("sameLocalWallTime: the two fires of a DST fall-back hour read alike; other instants do not", () => {
  const cases: Array<[a: string, b: string, zone: string, expected: boolean, why: string]> = [
    ["2027-11-07T05:30:00Z", "2027-11-07T06:30:00Z", "America/New_York", true, "01:30 EDT and 01:30 EST"],
    ["2027-11-07T05:30:00Z", "2027-11-07T06:30:00Z", "UTC", false, "UTC never repeats an hour"],
    ["2027-11-06T05:30:00Z", "2027-11-07T06:30:00Z", "America/New_York", false, "the day before"],
    ["2026-12-07T00:00:00Z", "2026-12-07T00:00:03Z", "Asia/Seoul", false, "seconds-level fires differ"],
  ];
  for (const [a, b, zone, expected, why] of cases) assert.equal(sameLocalWallTime(new Date(a), new Date(b), zone), expected, why);
});

test("deliveryGroups with a recurring run's next fire: across a DST change every run ends before the next fire, and no local date is sent twice", () => {
  // "0 9 * * *" in UTC with local 09:00, run after run across the UK's and the US's autumn changes.
  const zones = ["Europe/London", "America/New_York", "Asia/Seoul"];
  const day = 86_400_000;
  const sentDates = new Map<string, string[]>(zones.map((zone) => [zone, []]));
  for (let fire = Date.parse("2026-10-20T09:00:00Z"); fire <= Date.parse("2026-11-05T09:00:00Z"); fire += day) {
    const nextFire = new Date(fire + day);
    for (const group of deliveryGroups(zones, "UTC", "09:00", new Date(fire), nextFire)) {
      assert.ok(group.sendAt >= fire && group.sendAt < nextFire.getTime(), `run of ${new Date(fire).toISOString()} sends before the next fire`);
      for (const zone of group.timezones) sentDates.get(zone)!.push(DateTime.fromMillis(group.sendAt, { zone }).toISODate()!);
    }
  }
  for (const [zone, dates] of sentDates) {
    assert.equal(new Set(dates).size, dates.length, `${zone}: no local date twice`);
    // Every local date from the first to the last was sent: London's 25 October (09:00 GMT is the
    // next fire itself) is the next run's, not a run that would still be open at that fire.
    const days = (Date.parse(dates.at(-1)!) - Date.parse(dates[0]!)) / day + 1;
    assert.equal(dates.length, days, `${zone}: ${dates.join(", ")}`);
  }
  // Without the next fire (a one-off campaign) the first instant is planned, as before.
  assert.deepEqual(deliveryGroups(["Europe/London"], "UTC", "09:00", new Date("2026-10-24T09:00:00Z")).map((g) => new Date(g.sendAt).toISOString()), ["2026-10-25T09:00:00.000Z"]);
  assert.deepEqual(deliveryGroups(["Europe/London"], "UTC", "09:00", new Date("2026-10-24T09:00:00Z"), new Date("2026-10-25T09:00:00Z")), []);
});
