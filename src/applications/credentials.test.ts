import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { captureLogLines } from "../../test/support/log-capture";
import crypto from "node:crypto";
import { startTestApp, type TestApp } from "../../test/support/harness";
import { generateApnsSigningKey } from "../providers/simulator";

// Everything the API logs while it refuses credentials; a refused secret must not show up here either.
const { lines, stream: capture } = captureLogLines();

let app: TestApp;

before(async () => {
  app = await startTestApp({ logDestination: capture, logLevel: "debug" });
});
after(async () => {
  await app.close();
});

const validApns = () => ({ team_id: "TEAM123456", key_id: "KEY1234567", signing_key: generateApnsSigningKey().privateKeyPem, bundle_id: "com.example.app" });

function serviceAccount(privateKey: string): Record<string, unknown> {
  return { type: "service_account", project_id: "example-project", client_email: "push@example-project.iam.gserviceaccount.com", private_key: privateKey };
}

const rsaPem = (): string => crypto.generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ type: "pkcs8", format: "pem" }).toString();

async function patchCredentials(id: string, providerCredentials: unknown) {
  return app.request("PATCH", `/admin/applications/${id}`, { admin: true, body: { provider_credentials: providerCredentials } });
}

async function storedCiphertext(id: string): Promise<string | null> {
  return ((await app.deps.db("applications").where("id", id).first("provider_credentials_ciphertext")) as { provider_credentials_ciphertext: string | null }).provider_credentials_ciphertext;
}

// A PEM-looking key with a body OpenSSL cannot read; the old check only looked for "PRIVATE KEY".
const UNREADABLE = "-----BEGIN PRIVATE KEY-----\nMIGTAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBHkwdwIBAQQg\n-----END PRIVATE KEY-----";

const REFUSED: Array<[label: string, credentials: () => Record<string, unknown>, field: string]> = [
  ["an unreadable .p8", () => ({ apns: { ...validApns(), signing_key: UNREADABLE } }), "provider_credentials.apns.signing_key"],
  ["an RSA key as the .p8", () => ({ apns: { ...validApns(), signing_key: rsaPem() } }), "provider_credentials.apns.signing_key"],
  ["an EC key on another curve", () => ({ apns: { ...validApns(), signing_key: crypto.generateKeyPairSync("ec", { namedCurve: "secp384r1" }).privateKey.export({ type: "pkcs8", format: "pem" }).toString() } }), "provider_credentials.apns.signing_key"],
  ["a team id that is not Apple's 10 characters", () => ({ apns: { ...validApns(), team_id: "team 1" } }), "provider_credentials.apns.team_id"],
  ["a bundle id with a space", () => ({ apns: { ...validApns(), bundle_id: "com.example app" } }), "provider_credentials.apns.bundle_id"],
  ["an unreadable service account key", () => ({ fcm: { service_account: serviceAccount(UNREADABLE) } }), "provider_credentials.fcm.service_account.private_key"],
  ["an empty project id", () => ({ fcm: { service_account: { ...serviceAccount(rsaPem()), project_id: "" } } }), "provider_credentials.fcm.service_account.project_id"],
  ["a project id with a path in it", () => ({ fcm: { service_account: { ...serviceAccount(rsaPem()), project_id: "a/../b" } } }), "provider_credentials.fcm.service_account.project_id"],
];

for (const [label, credentials, field] of REFUSED) {
  test(`${label} is refused at upload with validation_error, and the stored credentials stay as they were`, async () => {
    const { id } = await app.createApplication();
    const good = await patchCredentials(id, { apns: validApns() });
    assert.equal(good.status, 200, JSON.stringify(good.body));
    const before = await storedCiphertext(id);
    const body = credentials();
    const res = await patchCredentials(id, body);
    assert.equal(res.status, 422, JSON.stringify(res.body));
    assert.equal(res.body.status, "error");
    assert.equal(res.body.error.code, "validation_error");
    assert.ok(field in res.body.error.details.fields, JSON.stringify(res.body.error.details));
    assert.ok(!JSON.stringify(res.body).includes("PRIVATE KEY"), "the refusal does not echo the key");
    assert.equal(await storedCiphertext(id), before, "nothing half-written");
  });
}

test("create with an unusable key creates no application", async () => {
  const name = `refused-${crypto.randomUUID()}`;
  const res = await app.request("POST", "/admin/applications", { admin: true, body: { name, provider_credentials: { apns: { ...validApns(), signing_key: UNREADABLE } } } });
  assert.equal(res.status, 422, JSON.stringify(res.body));
  assert.equal(await app.deps.db("applications").where("name", name).first(), undefined);
});

test("valid .p8 and service account keys are accepted; APNs defaults to production", async () => {
  const { id } = await app.createApplication();
  const res = await patchCredentials(id, { apns: validApns(), fcm: { service_account: serviceAccount(rsaPem()) } });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  // Development builds reach the sandbox through their subscription's test_type; a sandbox default sent every production token there.
  assert.deepEqual(res.body.data.providers, {
    apns: { team_id: "TEAM123456", key_id: "KEY1234567", bundle_id: "com.example.app", production: true },
    fcm: { project_id: "example-project" },
  });
  const sandbox = await patchCredentials(id, { apns: { ...validApns(), production: false } });
  assert.equal(sandbox.body.data.providers.apns.production, false);
});

test("refused and accepted keys never reach the logs", async () => {
  const { id } = await app.createApplication();
  const accepted = validApns();
  await patchCredentials(id, { apns: accepted });
  await patchCredentials(id, { apns: { ...validApns(), signing_key: UNREADABLE } });
  const logged = lines.join("");
  assert.ok(lines.length > 0, "the requests were logged");
  for (const secret of [accepted.signing_key.split("\n")[1]!, UNREADABLE.split("\n")[1]!]) {
    assert.ok(!logged.includes(secret), "a key line appeared in the logs");
  }
});
