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
