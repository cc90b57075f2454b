import { test } from "node:test";
import assert from "node:assert/strict";
import { TagValue } from "./schemas";

/** [JSON text of a tag value, what is stored, or null when refused]. */
const TAG_VALUES: Array<[json: string, stored: string | null]> = [
  ['"vip"', "vip"],
  ["42", "42"],
  ["-7", "-7"],
  ["1.5", "1.5"],
  ["true", "true"],
  ["9007199254740991", "9007199254740991"],
  // Beyond 2^53 the parsed number is already rounded: stored as "12345678901234567000", it matched no device tagged with the real id.
  ["12345678901234567890", null],
  ["1e21", null],
  ['"12345678901234567890"', "12345678901234567890"],
  ["null", null],
];

test("tag values: strings, booleans and numbers JSON carries exactly are stored as text; integers past 2^53 are refused", () => {
  for (const [json, stored] of TAG_VALUES) {
    const result = TagValue.safeParse(JSON.parse(json));
    if (stored === null) {
      assert.equal(result.success, false, json);
    } else {
      assert.ok(result.success, json);
      assert.equal(result.data, stored, json);
    }
  }
});
