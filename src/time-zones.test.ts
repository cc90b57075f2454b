import { test } from "node:test";
import assert from "node:assert/strict";
import { isIanaTimeZone, TimeZoneName } from "./time-zones";

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

test("TimeZoneName trims, and refuses what isIanaTimeZone refuses", () => {
  assert.equal(TimeZoneName.parse(" Asia/Seoul "), "Asia/Seoul");
  for (const zone of ["", "+09:00", "Mars/Base", "x".repeat(65)]) assert.equal(TimeZoneName.safeParse(zone).success, false, zone);
});
