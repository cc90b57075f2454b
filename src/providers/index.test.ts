import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { installDnsGuard, type DnsGuard } from "./dns-guard";
import { ApnsProvider, FcmProvider, ProviderNotConfiguredError, createProviderRegistry, credentialFingerprint, usesApnsSandbox, type ApplicationPushCredentials } from "./index";
import { ProviderSimulator, generateApnsSigningKey } from "./simulator";

let guard: DnsGuard;
let sim: ProviderSimulator;

before(async () => {
  guard = installDnsGuard();
  sim = new ProviderSimulator();
  await sim.start();
});

after(async () => {
  await sim.stop();
  assert.deepEqual(guard.blocked, []);
  guard.uninstall();
});

const credentials = (applicationId = "app-1"): ApplicationPushCredentials => ({
  applicationId,
  apns: sim.apnsCredentials(),
  fcm: sim.fcmCredentials(),
});

test("credential fingerprints ignore key order and change with any value", () => {
  assert.equal(credentialFingerprint({ a: 1, b: { c: 2, d: 3 } }), credentialFingerprint({ b: { d: 3, c: 2 }, a: 1 }));
  assert.notEqual(credentialFingerprint({ a: 1 }), credentialFingerprint({ a: 2 }));
  assert.equal(credentialFingerprint({ a: 1, b: undefined }), credentialFingerprint({ a: 1 }));
  assert.doesNotMatch(credentialFingerprint({ secret: "hunter2" }), /hunter2/);
});

test("development builds (test_type 1) go to the APNs sandbox host whatever the application's flag, ad-hoc builds (2) to production as Apple signs them; production: false sends every device to the sandbox", async () => {
  const cases: Array<[testType: number | null | undefined, sandbox: boolean]> = [
    [0, false],
    [1, true],
    [2, false],
    [null, false],
    [undefined, false],
  ];
  for (const [testType, sandbox] of cases) assert.equal(usesApnsSandbox(testType), sandbox, String(testType));
  // No simulator endpoint: the provider's origin is Apple's host for its environment (nothing is sent).
  const registry = createProviderRegistry();
  try {
    const production = { applicationId: "app-hosts", apns: { ...sim.apnsCredentials(), environment: "production" as const } };
    const sandboxOnly = { applicationId: "app-hosts-dev", apns: { ...sim.apnsCredentials(), environment: "sandbox" as const } };
    const origin = (credentials: ApplicationPushCredentials, testType: number) => (registry.providerFor(credentials, "iOSPush", { sandbox: usesApnsSandbox(testType) }) as ApnsProvider).origin;
    assert.equal(origin(production, 0), "https://api.push.apple.com:443");
    assert.equal(origin(production, 1), "https://api.sandbox.push.apple.com:443");
    assert.equal(origin(production, 2), "https://api.push.apple.com:443");
    assert.equal(origin(sandboxOnly, 0), "https://api.sandbox.push.apple.com:443");
  } finally {
    await registry.closeAll();
  }
});

test("providers are cached per application credential and reach the simulator", async () => {
  const registry = createProviderRegistry({ apnsEndpoint: sim.apnsEndpoint(), fcmEndpoint: sim.fcmEndpoint() });
  try {
    const ios = registry.providerFor(credentials(), "iOSPush");
    const android = registry.providerFor(credentials(), "AndroidPush");
    assert.ok(ios instanceof ApnsProvider);
    assert.ok(android instanceof FcmProvider);
    assert.equal(registry.providerFor(credentials(), "iOSPush"), ios, "same credential → same pool");
    assert.equal(registry.providerFor({ ...credentials(), apns: { ...sim.apnsCredentials() } }, "iOSPush"), ios, "equal by value, not identity");
    assert.notEqual(registry.providerFor(credentials("app-2"), "iOSPush"), ios, "other application → own provider");
    assert.notEqual(registry.providerFor(credentials(), "iOSPush", { sandbox: true }), ios, "sandbox has its own pool");
    const bulkIos = registry.providerFor(credentials(), "iOSPush", { lane: "bulk" });
    assert.notEqual(bulkIos, ios, "campaign batches (bulk lane) have their own APNs pool");
    assert.notEqual(registry.providerFor(credentials(), "AndroidPush", { lane: "bulk" }), android, "and their own FCM pool");
    assert.equal(registry.providerFor(credentials(), "iOSPush", { lane: "single" }), ios, "single is the default lane");
    assert.equal(registry.size(), 6);
    // A rotated credential retires each lane's pool on its next use.
    const rotated = { ...credentials(), apns: { ...sim.apnsCredentials(), signingKey: generateApnsSigningKey().privateKeyPem } };
    assert.notEqual(registry.providerFor(rotated, "iOSPush", { lane: "bulk" }), bulkIos);
    assert.equal(registry.size(), 6);
    const retired = await bulkIos.send({ messageId: "m-0", token: "ok-retired", body: "x" });
  assert.deepEqual([retired.kind, retired.kind === "temporary" ? retired.reason : undefined], ["temporary", "provider_closed"], "the retired bulk pool refuses new sends");
    const message = { messageId: "m-1", token: "ok-registry", body: "hi" };
    assert.equal((await ios.send(message)).kind, "success");
    assert.equal((await android.send(message)).kind, "success");
    assert.equal(sim.requestsFor("ok-registry"), 2);
  } finally {
    await registry.closeAll();
  }
  assert.equal(registry.size(), 0);
});

test("a rotated credential replaces the application's provider and closes the old one", async () => {
  const registry = createProviderRegistry({ apnsEndpoint: sim.apnsEndpoint(), fcmEndpoint: sim.fcmEndpoint() });
  try {
    const before = registry.providerFor(credentials(), "iOSPush");
    const rotated = { ...credentials(), apns: { ...sim.apnsCredentials(), signingKey: generateApnsSigningKey().privateKeyPem } };
    const after = registry.providerFor(rotated, "iOSPush");
    assert.notEqual(after, before);
    assert.equal(registry.size(), 1);
    const outcome = await before.send({ messageId: "m", token: "ok-rotated", body: "x" });
    assert.equal(outcome.kind === "temporary" ? outcome.reason : outcome.kind, "provider_closed");
  } finally {
    await registry.closeAll();
  }
});

test("missing credentials or an unsupported type throw ProviderNotConfiguredError", async () => {
  const registry = createProviderRegistry();
  assert.throws(() => registry.providerFor({ applicationId: "a" }, "iOSPush"), ProviderNotConfiguredError);
  assert.throws(() => registry.providerFor({ applicationId: "a" }, "AndroidPush"), { code: "provider_not_configured" });
  assert.throws(() => registry.providerFor(credentials(), "Email" as never), ProviderNotConfiguredError);
  await registry.closeAll();
});

test("a provider nobody asked for within the idle time is closed and a later ask opens a new one; one in use stays", async () => {
  let clock = 0;
  const registry = createProviderRegistry({ apnsEndpoint: sim.apnsEndpoint(), fcmEndpoint: sim.fcmEndpoint(), idleMs: 60_000, now: () => clock });
  try {
    const idle = registry.providerFor(credentials("app-idle"), "iOSPush");
    const busy = registry.providerFor(credentials("app-busy"), "iOSPush");
    assert.equal((await idle.send({ messageId: "m-1", token: "ok-idle-1", body: "hi" })).kind, "success");
    clock = 50_000;
    assert.equal(registry.providerFor(credentials("app-busy"), "iOSPush"), busy);
    clock = 70_000;
    // The next ask sweeps: app-idle was last asked for 70 s ago, app-busy 20 s ago.
    assert.equal(registry.providerFor(credentials("app-busy"), "iOSPush"), busy);
    assert.equal(registry.size(), 1);
    const closed = await idle.send({ messageId: "m-2", token: "ok-idle-2", body: "hi" });
    assert.equal(closed.kind === "temporary" ? closed.reason : closed.kind, "provider_closed");
    const reopened = registry.providerFor(credentials("app-idle"), "iOSPush");
    assert.notEqual(reopened, idle);
    assert.equal((await reopened.send({ messageId: "m-3", token: "ok-idle-3", body: "hi" })).kind, "success");
  } finally {
    await registry.closeAll();
  }
});
