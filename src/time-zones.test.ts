import { test } from "node:test";
import assert from "node:assert/strict";
import { isIanaTimeZone, knownTimeZoneCount, TimeZoneName } from "./time-zones";

test("isIanaTimeZone: IANA names this runtime knows, never offsets or abbreviations", () => {
  const cases: Array<[zone: string, valid: boolean]> = [
    ["Asia/Seoul", true],
    ["UTC", true],
    ["America/Argentina/Buenos_Aires", true],
    ["Etc/GMT+9", true],
    ["Asia/Seoul", true], // again: answered from the known set
    ["Mars/Base", false],
    ["", false],
    ["KST+9", false],
    ["+09:00", false],
    ["Asia/Seoul/", false],
    [" Asia/Seoul", false],
  ];
  for (const [zone, valid] of cases) assert.equal(isIanaTimeZone(zone), valid, JSON.stringify(zone));
});

test("TimeZoneName trims, takes the runtime's letter case, keeps a link's own name, and refuses what isIanaTimeZone refuses", () => {
  assert.equal(TimeZoneName.parse(" Asia/Seoul "), "Asia/Seoul");
  assert.equal(TimeZoneName.parse("asia/seoul"), "Asia/Seoul");
  assert.equal(TimeZoneName.parse("utc"), "UTC");
  assert.equal(TimeZoneName.parse("Asia/Kolkata"), "Asia/Kolkata");
  for (const zone of ["", "+09:00", "Mars/Base", "x".repeat(65)]) assert.equal(TimeZoneName.safeParse(zone).success, false, zone);
});

test("names in any letter case are valid but do not grow the cache of known names", () => {
  for (let i = 0; i < 3_000; i++) {
    const spelled = [..."America/Argentina/ComodRivadavia"].map((c, j) => ((i >> j % 12) & 1 ? c.toUpperCase() : c.toLowerCase())).join("");
    assert.equal(isIanaTimeZone(spelled), true, spelled);
  }
  assert.ok(knownTimeZoneCount() <= 1_100, `${knownTimeZoneCount()} names kept`);
});
