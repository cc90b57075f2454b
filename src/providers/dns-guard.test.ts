import { test } from "node:test";
import assert from "node:assert/strict";
import dns from "node:dns";
import { ApnsProvider } from "./apns";
import { DnsGuardError, installDnsGuard, isBlockedHost } from "./dns-guard";
import { FcmProvider } from "./fcm";
import { generateApnsSigningKey } from "./simulator";

test("blocked host table", () => {
  const cases: Array<[string, boolean]> = [
    ["api.push.apple.com", true],
    ["api.sandbox.push.apple.com", true],
    ["apple.com", true],
    ["fcm.googleapis.com", true],
    ["oauth2.googleapis.com", true],
    ["accounts.google.com", true],
    ["API.PUSH.APPLE.COM.", true],
    ["localhost", false],
    ["127.0.0.1", false],
    ["notapple.com", false],
    ["googleapis.com.evil.test", false],
  ];
  for (const [host, blocked] of cases) assert.equal(isBlockedHost(host), blocked, host);
});

test("lookups of provider hosts fail with EDNSGUARD; others pass; uninstall restores", async () => {
  const original = dns.lookup;
  const guard = installDnsGuard();
  try {
    const error = await new Promise<NodeJS.ErrnoException | null>((resolve) => dns.lookup("api.push.apple.com", (err) => resolve(err)));
    assert.ok(error instanceof DnsGuardError);
    assert.equal(error.code, "EDNSGUARD");
    await assert.rejects(dns.promises.lookup("fcm.googleapis.com"), { code: "EDNSGUARD" });
    const local = await dns.promises.lookup("localhost");
    assert.ok(local.address.length > 0);
    assert.deepEqual(guard.blocked, ["api.push.apple.com", "fcm.googleapis.com"]);
  } finally {
    guard.uninstall();
  }
  assert.equal(dns.lookup, original);
});

test("nested installs are reference-counted", async () => {
  // `npm test` preloads a guard into every test process, so compare with what was there before.
  const before = dns.lookup;
  const outer = installDnsGuard();
  const inner = installDnsGuard();
  inner.uninstall();
  await assert.rejects(dns.promises.lookup("api.push.apple.com"), { code: "EDNSGUARD" }, "still guarded while the outer install is active");
  outer.uninstall();
  assert.equal(dns.lookup, before);
});

test("an adapter left pointing at Apple or Google fails fast instead of leaving the machine", async () => {
  const guard = installDnsGuard();
  const apns = new ApnsProvider({ teamId: "T", keyId: "K", signingKey: generateApnsSigningKey().privateKeyPem, bundleId: "b", environment: "sandbox" });
  const fcm = new FcmProvider({ projectId: "p", accessToken: "x" });
  try {
    const started = Date.now();
    const message = { messageId: "m", token: "abc", body: "hi" };
    const [a, f] = await Promise.all([apns.send(message), fcm.send(message)]);
    assert.ok(Date.now() - started < 3000, "fails fast");
    assert.deepEqual(a, a.kind === "temporary" ? { ...a, class: "network", reason: "dns_blocked", code: "EDNSGUARD" } : "temporary");
    assert.equal(f.kind, "temporary");
    assert.equal(f.kind === "temporary" ? f.code : "", "app/network-error");
    assert.ok(guard.blocked.includes("api.sandbox.push.apple.com"));
    assert.ok(guard.blocked.includes("fcm.googleapis.com"));
  } finally {
    await Promise.all([apns.close(), fcm.close()]);
    guard.uninstall();
  }
});
