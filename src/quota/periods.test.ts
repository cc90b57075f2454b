import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { periodKeys, resolveTimeZone, startOfLocalDay } from "./periods";

// Expected instants were taken from the system tz database (`date -u -d 'TZ="zone" YYYY-MM-DD 00:00'`),
// not from this module.
const cases: Array<{
  name: string;
  now: string;
  tz: string;
  day: string;
  month: string;
  dayStart: string;
  dayResetAt: string;
  monthStart: string;
  monthResetAt: string;
}> = [
  {
    name: "UTC mid-day",
    now: "2026-11-22T10:00:00Z",
    tz: "UTC",
    day: "2026-11-22",
    month: "2026-11",
    dayStart: "2026-11-22T00:00:00.000Z",
    dayResetAt: "2026-11-23T00:00:00.000Z",
    monthStart: "2026-11-01T00:00:00.000Z",
    monthResetAt: "2026-12-01T00:00:00.000Z",
  },
  {
    name: "UTC exactly at midnight belongs to the new day",
    now: "2026-11-23T00:00:00Z",
    tz: "UTC",
    day: "2026-11-23",
    month: "2026-11",
    dayStart: "2026-11-23T00:00:00.000Z",
    dayResetAt: "2026-11-24T00:00:00.000Z",
    monthStart: "2026-11-01T00:00:00.000Z",
    monthResetAt: "2026-12-01T00:00:00.000Z",
  },
  {
    name: "UTC last millisecond of the year rolls day, month and year",
    now: "2026-12-31T23:59:59.999Z",
    tz: "UTC",
    day: "2026-12-31",
    month: "2026-12",
    dayStart: "2026-12-31T00:00:00.000Z",
    dayResetAt: "2027-01-01T00:00:00.000Z",
    monthStart: "2026-12-01T00:00:00.000Z",
    monthResetAt: "2027-01-01T00:00:00.000Z",
  },
  {
    name: "Asia/Seoul: 23:59:59 KST is still the 22nd although UTC says 14:59",
    now: "2026-11-22T14:59:59Z",
    tz: "Asia/Seoul",
    day: "2026-11-22",
    month: "2026-11",
    dayStart: "2026-11-21T15:00:00.000Z",
    dayResetAt: "2026-11-22T15:00:00.000Z",
    monthStart: "2026-10-31T15:00:00.000Z",
    monthResetAt: "2026-11-30T15:00:00.000Z",
  },
  {
    name: "Asia/Seoul: 15:00 UTC is local midnight of the 23rd",
    now: "2026-11-22T15:00:00Z",
    tz: "Asia/Seoul",
    day: "2026-11-23",
    month: "2026-11",
    dayStart: "2026-11-22T15:00:00.000Z",
    dayResetAt: "2026-11-23T15:00:00.000Z",
    monthStart: "2026-10-31T15:00:00.000Z",
    monthResetAt: "2026-11-30T15:00:00.000Z",
  },
  {
    name: "Asia/Seoul: the local month turns while UTC is still in November",
    now: "2026-11-30T15:00:00Z",
    tz: "Asia/Seoul",
    day: "2026-12-01",
    month: "2026-12",
    dayStart: "2026-11-30T15:00:00.000Z",
    dayResetAt: "2026-12-01T15:00:00.000Z",
    monthStart: "2026-11-30T15:00:00.000Z",
    monthResetAt: "2026-12-31T15:00:00.000Z",
  },
  {
    name: "America/New_York spring forward: a 23-hour day, starts EST and resets EDT",
    now: "2026-03-08T12:00:00Z",
    tz: "America/New_York",
    day: "2026-03-08",
    month: "2026-03",
    dayStart: "2026-03-08T05:00:00.000Z",
    dayResetAt: "2026-03-09T04:00:00.000Z",
    monthStart: "2026-03-01T05:00:00.000Z",
    monthResetAt: "2026-04-01T04:00:00.000Z",
  },
  {
    name: "America/New_York one second before the 02:00 jump",
    now: "2026-03-08T06:59:59Z",
    tz: "America/New_York",
    day: "2026-03-08",
    month: "2026-03",
    dayStart: "2026-03-08T05:00:00.000Z",
    dayResetAt: "2026-03-09T04:00:00.000Z",
    monthStart: "2026-03-01T05:00:00.000Z",
    monthResetAt: "2026-04-01T04:00:00.000Z",
  },
  {
    name: "America/New_York fall back: a 25-hour day, starts EDT and resets EST",
    now: "2026-11-01T12:00:00Z",
    tz: "America/New_York",
    day: "2026-11-01",
    month: "2026-11",
    dayStart: "2026-11-01T04:00:00.000Z",
    dayResetAt: "2026-11-02T05:00:00.000Z",
    monthStart: "2026-11-01T04:00:00.000Z",
    monthResetAt: "2026-12-01T05:00:00.000Z",
  },
  {
    name: "America/New_York: 23:59:59 EDT on Oct 31 is still October",
    now: "2026-11-01T03:59:59Z",
    tz: "America/New_York",
    day: "2026-10-31",
    month: "2026-10",
    dayStart: "2026-10-31T04:00:00.000Z",
    dayResetAt: "2026-11-01T04:00:00.000Z",
    monthStart: "2026-10-01T04:00:00.000Z",
    monthResetAt: "2026-11-01T04:00:00.000Z",
  },
  {
    name: "America/Santiago skips midnight (00:00 -> 01:00): the day starts at the jump",
    now: "2026-09-06T12:00:00Z",
    tz: "America/Santiago",
    day: "2026-09-06",
    month: "2026-09",
    dayStart: "2026-09-06T04:00:00.000Z",
    dayResetAt: "2026-09-07T03:00:00.000Z",
    monthStart: "2026-09-01T04:00:00.000Z",
    monthResetAt: "2026-10-01T03:00:00.000Z",
  },
  {
    name: "America/Santiago: the day before the skipped midnight resets at the jump",
    now: "2026-09-06T03:59:59Z",
    tz: "America/Santiago",
    day: "2026-09-05",
    month: "2026-09",
    dayStart: "2026-09-05T04:00:00.000Z",
    dayResetAt: "2026-09-06T04:00:00.000Z",
    monthStart: "2026-09-01T04:00:00.000Z",
    monthResetAt: "2026-10-01T03:00:00.000Z",
  },
  {
    name: "America/Santiago fall back at midnight: the repeated 23:xx hour stays on the same day",
    now: "2026-04-05T03:30:00Z",
    tz: "America/Santiago",
    day: "2026-04-04",
    month: "2026-04",
    dayStart: "2026-04-04T03:00:00.000Z",
    dayResetAt: "2026-04-05T04:00:00.000Z",
    monthStart: "2026-04-01T03:00:00.000Z",
    monthResetAt: "2026-05-01T04:00:00.000Z",
  },
  {
    name: "Asia/Kathmandu (+05:45) resets at a quarter past",
    now: "2026-11-22T18:14:59Z",
    tz: "Asia/Kathmandu",
    day: "2026-11-22",
    month: "2026-11",
    dayStart: "2026-11-21T18:15:00.000Z",
    dayResetAt: "2026-11-22T18:15:00.000Z",
    monthStart: "2026-10-31T18:15:00.000Z",
    monthResetAt: "2026-11-30T18:15:00.000Z",
  },
  {
    name: "Pacific/Kiritimati (+14) is already tomorrow",
    now: "2026-11-22T10:00:00Z",
    tz: "Pacific/Kiritimati",
    day: "2026-11-23",
    month: "2026-11",
    dayStart: "2026-11-22T10:00:00.000Z",
    dayResetAt: "2026-11-23T10:00:00.000Z",
    monthStart: "2026-10-31T10:00:00.000Z",
    monthResetAt: "2026-11-30T10:00:00.000Z",
  },
];

describe("periodKeys", () => {
  for (const c of cases) {
    test(c.name, () => {
      const keys = periodKeys(new Date(c.now), c.tz);
      assert.deepEqual(
        {
          day: keys.day,
          month: keys.month,
          dayStart: keys.dayStart.toISOString(),
          dayResetAt: keys.dayResetAt.toISOString(),
          monthStart: keys.monthStart.toISOString(),
          monthResetAt: keys.monthResetAt.toISOString(),
        },
        { day: c.day, month: c.month, dayStart: c.dayStart, dayResetAt: c.dayResetAt, monthStart: c.monthStart, monthResetAt: c.monthResetAt },
      );
      assert.equal(keys.timezone, c.tz);
      // The period contains `now` and the reset lies in the future.
      assert.ok(keys.dayStart.getTime() <= Date.parse(c.now) && Date.parse(c.now) < keys.dayResetAt.getTime());
      assert.ok(keys.monthStart.getTime() <= Date.parse(c.now) && Date.parse(c.now) < keys.monthResetAt.getTime());
    });
  }

  test("every few hours of a DST year map into a period that contains it", () => {
    for (const tz of ["America/New_York", "America/Santiago", "Europe/London", "Australia/Lord_Howe", "Asia/Seoul"]) {
      for (let t = Date.parse("2026-01-01T00:00:00Z"); t < Date.parse("2027-01-01T00:00:00Z"); t += 5 * 3_600_000 + 7_000) {
        const keys = periodKeys(new Date(t), tz);
        assert.ok(keys.dayStart.getTime() <= t && t < keys.dayResetAt.getTime(), `${tz} ${new Date(t).toISOString()}`);
        assert.ok(periodKeys(keys.dayResetAt, tz).day > keys.day, `${tz} reset opens the next day`);
        assert.equal(periodKeys(new Date(keys.dayResetAt.getTime() - 1), tz).day, keys.day, `${tz} the last ms before reset is the same day`);
      }
    }
  });

  test("rejects an invalid date", () => {
    assert.throws(() => periodKeys(new Date(NaN), "UTC"), RangeError);
  });
});

describe("startOfLocalDay", () => {
  test("month and day overflow roll into the next year", () => {
    assert.equal(startOfLocalDay(2026, 13, 1, "Asia/Seoul").toISOString(), "2026-12-31T15:00:00.000Z");
    assert.equal(startOfLocalDay(2026, 2, 29, "UTC").toISOString(), "2026-03-01T00:00:00.000Z");
  });
});

describe("timezones", () => {


  test("resolveTimeZone takes the first valid candidate, else UTC", () => {
    assert.equal(resolveTimeZone("Asia/Seoul", "America/New_York"), "Asia/Seoul");
    assert.equal(resolveTimeZone(null, "America/New_York"), "America/New_York");
    assert.equal(resolveTimeZone("Mars/Base", "Asia/Seoul"), "Asia/Seoul");
    assert.equal(resolveTimeZone(undefined, null), "UTC");
  });
});
