import { test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { SecretBox, parseMasterKey } from "./secret-box";

const box = new SecretBox(crypto.randomBytes(32));

test("encrypt/decrypt round-trips and never leaves the plaintext in the ciphertext", () => {
  const token = "a".repeat(64);
  const sealed = box.encrypt(token);
  assert.equal(box.decrypt(sealed), token);
  assert.ok(!sealed.includes(token));
  assert.notEqual(box.encrypt(token), sealed, "a fresh IV per encryption");
});

test("tampered ciphertext and a different key are rejected", () => {
  const sealed = box.encrypt("device-token");
  const parts = sealed.split(":");
  const flipped = Buffer.from(parts[3]!, "base64url");
  flipped[0] = flipped[0]! ^ 1;
  assert.throws(() => box.decrypt([parts[0], parts[1], parts[2], flipped.toString("base64url")].join(":")));
  assert.throws(() => new SecretBox(crypto.randomBytes(32)).decrypt(sealed));
});

test("a shortened authentication tag or nonce is rejected (a 4-byte tag would make forgeries guessable)", () => {
  const sealed = box.encrypt("apns-device-token-abcdef");
  const [version, iv, tag, ciphertext] = sealed.split(":") as [string, string, string, string];
  const shortTag = Buffer.from(tag, "base64url").subarray(0, 4).toString("base64url");
  assert.throws(() => box.decrypt([version, iv, shortTag, ciphertext].join(":")), /unrecognised ciphertext format/);
  const shortIv = Buffer.from(iv, "base64url").subarray(0, 8).toString("base64url");
  assert.throws(() => box.decrypt([version, shortIv, tag, ciphertext].join(":")), /unrecognised ciphertext format/);
});

test("a value sealed with a context opens only with that context; unbound v1 values open with any", () => {
  const sealed = box.encrypt("device-token", "device-token:app-a");
  assert.match(sealed, /^v2:/);
  assert.equal(box.decrypt(sealed, "device-token:app-a"), "device-token");
  assert.throws(() => box.decrypt(sealed, "device-token:app-b"), "another application's context");
  assert.throws(() => box.decrypt(sealed, "provider-credentials:app-a"), "another kind of value");
  assert.throws(() => box.decrypt(sealed), /needs its context/);
  const legacy = box.encrypt("device-token");
  assert.match(legacy, /^v1:/);
  assert.equal(box.decrypt(legacy, "device-token:app-a"), "device-token", "rows sealed before binding stay readable");
});

test("with binding off (a rolling deploy from a release that reads only v1) it writes v1, and still reads v2", () => {
  const key = crypto.randomBytes(32);
  const unbinding = new SecretBox(key, { bind: false });
  const binding = new SecretBox(key);
  const written = unbinding.encrypt("device-token", "device-token:app-a");
  assert.match(written, /^v1:/);
  assert.equal(binding.decrypt(written, "device-token:app-a"), "device-token");
  assert.equal(unbinding.decrypt(binding.encrypt("device-token", "device-token:app-a"), "device-token:app-a"), "device-token");
});

test("resealUnbound upgrades an unbound value to one bound to its context, and leaves bound values (and a box with binding off) alone", () => {
  const legacy = box.encrypt("device-token");
  const upgraded = box.resealUnbound(legacy, "device-token", "device-token:app-a");
  assert.match(upgraded!, /^v2:/);
  assert.equal(box.decrypt(upgraded!, "device-token:app-a"), "device-token");
  assert.equal(box.resealUnbound(box.encrypt("device-token", "device-token:app-a"), "device-token", "device-token:app-a"), undefined);
  assert.equal(box.resealUnbound(null, "device-token", "device-token:app-a"), undefined);
  assert.equal(new SecretBox(crypto.randomBytes(32), { bind: false }).resealUnbound(legacy, "device-token", "device-token:app-a"), undefined);
});

test("hash is deterministic per key and differs across keys", () => {
  assert.equal(box.hash("t1"), box.hash("t1"));
  assert.notEqual(box.hash("t1"), box.hash("t2"));
  assert.notEqual(new SecretBox(crypto.randomBytes(32)).hash("t1"), box.hash("t1"));
});

test("master keys parse from hex and base64 and must be 32 bytes", () => {
  const raw = crypto.randomBytes(32);
  assert.deepEqual(parseMasterKey(raw.toString("hex")), raw);
  assert.deepEqual(parseMasterKey(raw.toString("base64")), raw);
  assert.throws(() => parseMasterKey("short"));
});
