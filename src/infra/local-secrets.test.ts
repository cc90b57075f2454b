import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { readOrCreateLocalSecret } from "./local-secrets";

test("a generated dev secret is kept across starts and never reads as a CLI option", () => {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "automata-secrets-"));
  try {
    // 200 fresh secrets: with base64url about 96% of such runs would include one starting with "-".
    const secrets = Array.from({ length: 200 }, (_, i) => readOrCreateLocalSecret(home, `secret-${i}`));
    assert.deepEqual(secrets.filter((s) => s.startsWith("-")), []);
    assert.equal(new Set(secrets).size, 200);
    assert.ok(secrets.every((s) => s.length >= 16), "long enough for AUTOMATA_ADMIN_TOKEN");
    assert.equal(readOrCreateLocalSecret(home, "secret-0"), secrets[0], "the second start reads the same secret");
    assert.equal((fs.statSync(path.join(home, "secret-0")).mode & 0o777).toString(8), "600");
  } finally {
    fs.rmSync(home, { recursive: true, force: true });
  }
});

test("a secret another start already wrote stands, and no temporary file is left behind", () => {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "automata-secrets-"));
  try {
    // What a racing start wrote between this one's check and its write: the generator runs, its value loses.
    const raced = readOrCreateLocalSecret(home, "encryption.key", () => {
      fs.writeFileSync(path.join(home, "encryption.key"), "written-by-the-other-start", { mode: 0o600 });
      return "written-by-this-start";
    });
    assert.equal(raced, "written-by-the-other-start");
    assert.deepEqual(fs.readdirSync(home), ["encryption.key"]);
    const fresh = readOrCreateLocalSecret(home, "admin-token");
    assert.equal(fs.readFileSync(path.join(home, "admin-token"), "utf8"), fresh);
    assert.deepEqual(fs.readdirSync(home).sort(), ["admin-token", "encryption.key"]);
  } finally {
    fs.rmSync(home, { recursive: true, force: true });
  }
});
