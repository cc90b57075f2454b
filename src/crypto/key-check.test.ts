import crypto from "node:crypto";
import path from "node:path";
import { execFile } from "node:child_process";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { Knex } from "knex";
import { createDb, migrateLatest } from "../db/knex";
import { createLogger } from "../logger";
import { SecretBox, parseMasterKey } from "./secret-box";
import { assertEncryptionKeyMatches, EncryptionKeyMismatchError } from "./key-check";
import { deviceTokenContext } from "../subscriptions/device-token";
import { providerCredentialsContext } from "../applications/repository";
import { newId } from "../db/ids";

// A worker or API started with another AUTOMATA_ENCRYPTION_KEY would fail every send it handles
// (token_unreadable is permanent) or seal tokens nobody else can open; these pin the start-up refusal.

const ROOT = path.resolve(__dirname, "../..");
const logger = createLogger("silent", "test");
const boxOf = (key: string) => new SecretBox(parseMasterKey(key));
const randomKey = () => crypto.randomBytes(32).toString("base64");

let admin: Knex;
const scratch: Array<{ name: string; db: Knex }> = [];

before(() => {
  admin = createDb(process.env.DATABASE_URL!, 1);
});
after(async () => {
  for (const { name, db } of scratch) {
    await db.destroy();
    await admin.raw(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  }
  await admin.destroy();
});

/** A migrated database of its own, so the run's recorded fingerprint stays untouched. */
async function freshDatabase(): Promise<Knex> {
  const name = `keycheck_${crypto.randomBytes(6).toString("hex")}`;
  await admin.raw(`CREATE DATABASE ${name}`);
  const url = new URL(process.env.DATABASE_URL!);
  url.pathname = `/${name}`;
  const db = createDb(url.toString(), 4);
  scratch.push({ name, db });
  await migrateLatest(db);
  return db;
}

test("the first start records the key; the same key starts again, another key is refused", async () => {
  const db = await freshDatabase();
  const key = randomKey();
  await assertEncryptionKeyMatches(db, boxOf(key), logger);
  await assertEncryptionKeyMatches(db, boxOf(key), logger);
  await assert.rejects(assertEncryptionKeyMatches(db, boxOf(randomKey()), logger), EncryptionKeyMismatchError);
  const stored = (await db("encryption_key_check").select("fingerprint")) as Array<{ fingerprint: string }>;
  assert.deepEqual(stored, [{ fingerprint: boxOf(key).fingerprint }]);
  assert.ok(!stored[0]!.fingerprint.includes(parseMasterKey(key).toString("hex")), "the key itself is not stored");
});

test("a database from before the check: the first start must open its sealed tokens and credentials before it records its key", async () => {
  const db = await freshDatabase();
  const key = randomKey();
  const box = boxOf(key);
  // Values sealed to their application (v2), which open only with that context.
  const appId = newId();
  await db("applications").insert({ id: appId, name: "before", provider_credentials_ciphertext: box.encrypt(JSON.stringify({ fcm: {} }), providerCredentialsContext(appId)) });
  await db("subscriptions").insert({ application_id: appId, subscription_type: "iOSPush", token_ciphertext: box.encrypt("a".repeat(64), deviceTokenContext(appId)), token_hash: box.hash("a".repeat(64)) });
  await assert.rejects(assertEncryptionKeyMatches(db, boxOf(randomKey()), logger), /the most recent stored device tokens do not decrypt/);
  assert.equal((await db("encryption_key_check").select()).length, 0, "a refused key is not recorded");
  // One corrupted row (the README's token_unreadable case) does not lock the right key out.
  await db("subscriptions").insert({ application_id: appId, subscription_type: "AndroidPush", token_ciphertext: "v1:corrupted", token_hash: box.hash("b".repeat(64)) });
  await assertEncryptionKeyMatches(db, box, logger);
  assert.equal(((await db("encryption_key_check").first("fingerprint")) as { fingerprint: string }).fingerprint, box.fingerprint);
});

test("two first starts with different keys at once: one key is recorded, the other start is refused", async () => {
  const db = await freshDatabase();
  const results = await Promise.allSettled([randomKey(), randomKey(), randomKey()].map((key) => assertEncryptionKeyMatches(db, boxOf(key), logger)));
  assert.equal(results.filter((r) => r.status === "fulfilled").length, 1, JSON.stringify(results));
  for (const r of results) if (r.status === "rejected") assert.ok(r.reason instanceof EncryptionKeyMismatchError);
});

test("the production API process exits at start with a clear message when its key is not the database's", { timeout: 60_000 }, async () => {
  const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const child = execFile(process.execPath, ["--import", "tsx", "src/api.ts"], {
      cwd: ROOT,
      timeout: 45_000,
      env: { ...process.env, PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "silent", AUTOMATA_ENCRYPTION_KEY: randomKey() },
    }, (_error, _stdout, stderr) => resolve({ code: child.exitCode, stderr }));
  });
  assert.equal(result.code, 1);
  assert.match(result.stderr, /AUTOMATA_ENCRYPTION_KEY is not the key this database's device tokens and provider credentials are encrypted with/);
});
