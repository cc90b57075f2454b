import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { FAILURE_CODES } from "./failure-codes";

test("every failure code our rules write is documented in the data model's error_code table (clients filter ?error_code= by them)", () => {
  const doc = fs.readFileSync(path.join(__dirname, "../../docs/data-model.md"), "utf8");
  const documented = new Set([...doc.matchAll(/^\s*\| `([a-z_]+)` \| (?:failed|errored) \|/gm)].map((m) => m[1]!));
  assert.deepEqual(Object.values(FAILURE_CODES).filter((code) => !documented.has(code)), []);
  assert.deepEqual([...documented].filter((code) => !(Object.values(FAILURE_CODES) as string[]).includes(code)), [], "and the table lists no code nothing writes");
});
