import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startTestApp, type TestApp } from "./support/harness";
import { createPushSubscription } from "./support/fixtures";
import { generateApnsSigningKey } from "../src/providers/simulator";
import { newId } from "../src/db/ids";
import { startApiServer } from "../src/runtime";
import net from "node:net";

/** Writes `request` as raw bytes and reads everything until the server closes the connection. */
function rawExchange(port: number, request: string | Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.write(request));
    const chunks: Buffer[] = [];
    socket.on("data", (chunk) => chunks.push(chunk));
    socket.on("error", reject);
    socket.on("close", () => resolve(Buffer.concat(chunks).toString("utf8")));
  });
}

let app: TestApp;
let apiKey: string;
let applicationId: string;

before(async () => {
  app = await startTestApp();
  ({ id: applicationId, apiKey } = await app.createApplication());
});
after(async () => {
  await app.close();
});

describe("authentication", () => {
  test("a missing API key answers 401 authentication_failed in the REF-001 envelope", async () => {
    const res = await app.request("GET", `/admin/applications/${applicationId}`);
    assert.equal(res.status, 401);
    assert.deepEqual(Object.keys(res.body), ["status", "error"]);
    assert.equal(res.body.status, "error");
    assert.equal(res.body.error.code, "authentication_failed");
  });

  test("a wrong or malformed API key answers 401", async () => {
    const forged = apiKey.slice(0, -4) + "AAAA";
    for (const key of [forged, "nonsense", apiKey + "x", apiKey.slice(0, -1)]) {
      const res = await app.request("POST", "/subscriptions", { key, body: {} });
      assert.equal(res.status, 401, key === forged ? "forged" : key);
      assert.equal(res.body.error.code, "authentication_failed");
    }
  });

  test("an anonymous request is refused before its body is parsed: malformed JSON without a key answers 401, not 400", async () => {
    const res = await app.request("POST", "/subscriptions", { rawBody: "{not json", headers: { "Content-Type": "application/json" } });
    assert.equal(res.status, 401);
    assert.equal(res.body.error.code, "authentication_failed");
    const admin = await app.request("POST", "/admin/applications", { rawBody: "{not json", headers: { "Content-Type": "application/json" } });
    assert.equal(admin.status, 401);
  });

  test("the admin API refuses a wrong bearer token", async () => {
    const res = await app.request("GET", `/admin/applications/${applicationId}`, { headers: { Authorization: "Bearer wrong-token-wrong-token" } });
    assert.equal(res.status, 401);
  });

  test("an API started without AUTOMATA_ADMIN_TOKEN refuses every admin request, an empty bearer token too", async () => {
    const unconfigured = await startApiServer({ ...app.deps, config: { ...app.deps.config, AUTOMATA_ADMIN_TOKEN: undefined } }, 0, "127.0.0.1");
    try {
      for (const authorization of [undefined, "Bearer ", "Bearer x", `Bearer ${app.adminToken}`]) {
        const res = await fetch(`${unconfigured.url}/api/v1/admin/applications`, { headers: authorization === undefined ? {} : { Authorization: authorization } });
        assert.equal(res.status, 401, String(authorization));
      }
      // A token that trims to nothing (a no-break space, which HTTP does not strip but String#trim does).
      const port = new URL(unconfigured.url).port;
      const answer = await rawExchange(Number(port), Buffer.from(`GET /api/v1/admin/applications HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer  \xa0\r\nConnection: close\r\n\r\n`, "latin1"));
      assert.match(answer, /^HTTP\/1\.1 401 /);
    } finally {
      await unconfigured.close();
    }
  });

  test("API keys are stored hashed, never in clear", async () => {
    const rows = await app.deps.db("api_keys").where("application_id", applicationId);
    assert.equal(rows.length, 1);
    assert.notEqual(rows[0].key_hash, apiKey);
    // The secret is everything after `as_<12-character lookup>_`; it is base64url, so it can hold
    // `_` itself (splitting on `_` made this test fail now and then on a fragment like "").
    const secret = apiKey.slice("as_".length + 12 + 1);
    assert.equal(secret.length, 32);
    assert.ok(!JSON.stringify(rows).includes(secret));
  });
});

describe("admin applications", () => {
  test("create returns the key once; get shows quota, tier and keys without secrets", async () => {
    const created = await app.request("POST", "/admin/applications", {
      admin: true,
      body: { name: "Quota App", quota: { daily_quota: 1000, monthly_quota: 20000, unit_price: 5, credit_balance: 10000, billing_currency: "KRW" }, rate_limit_tier: "premium", timezone: "Asia/Seoul" },
    });
    assert.equal(created.status, 201);
    assert.match(created.body.data.api_key, /^as_/);
    const got = await app.request("GET", `/admin/applications/${created.body.data.application_id}`, { admin: true });
    assert.equal(got.status, 200);
    assert.deepEqual(got.body.data.quota, { daily_quota: 1000, monthly_quota: 20000, unit_price: 5, billing_currency: "KRW", credit_balance: 10000 });
    assert.equal(got.body.data.rate_limit_tier, "premium");
    assert.equal(got.body.data.timezone, "Asia/Seoul");
    assert.ok(!JSON.stringify(got.body).includes(created.body.data.api_key));
  });

  test("billing_currency cannot change while credit in the old currency remains; with none left it can", async () => {
    const created = await app.request("POST", "/admin/applications", { admin: true, body: { name: "Currency App", quota: { unit_price: 5, credit_balance: 300, billing_currency: "KRW" } } });
    const id = created.body.data.application_id;
    const refused = await app.request("PATCH", `/admin/applications/${id}`, { admin: true, body: { name: "renamed", quota: { billing_currency: "USD", daily_quota: 7 } } });
    assert.equal(refused.status, 422, JSON.stringify(refused.body));
    assert.equal(refused.body.error.code, "validation_error");
    assert.match(refused.body.error.details.fields["quota.billing_currency"], /300 of credit in KRW/);
    const after = (await app.request("GET", `/admin/applications/${id}`, { admin: true })).body.data;
    assert.equal(after.name, "Currency App", "nothing of the refused PATCH was written");
    assert.deepEqual(after.quota, { daily_quota: null, monthly_quota: null, unit_price: 5, billing_currency: "KRW", credit_balance: 300 });

    const free = await app.request("POST", "/admin/applications", { admin: true, body: { name: "No Credit App", quota: { billing_currency: "KRW" } } });
    const switched = await app.request("PATCH", `/admin/applications/${free.body.data.application_id}`, { admin: true, body: { quota: { billing_currency: "USD", credit_balance: 50 } } });
    assert.equal(switched.status, 200, JSON.stringify(switched.body));
    assert.equal(switched.body.data.quota.billing_currency, "USD");
    assert.equal(switched.body.data.quota.credit_balance, 50, "the top-up in the same PATCH lands in the new currency");
  });

  test("billing_currency cannot change while messages wait to be sent (their refunds would land in the old currency), even after the price went to 0", async () => {
    const created = await app.request("POST", "/admin/applications", { admin: true, body: { name: "In-flight App", quota: { unit_price: 5, billing_currency: "KRW" } } });
    const id = created.body.data.application_id;
    const messageId = newId();
    await app.deps.db("messages").insert({ id: messageId, application_id: id, status: "errored", body: "retrying" });
    assert.equal((await app.request("PATCH", `/admin/applications/${id}`, { admin: true, body: { quota: { unit_price: 0 } } })).status, 200);
    const refused = await app.request("PATCH", `/admin/applications/${id}`, { admin: true, body: { quota: { billing_currency: "USD" } } });
    assert.equal(refused.status, 422, JSON.stringify(refused.body));
    assert.match(refused.body.error.details.fields["quota.billing_currency"], /waiting to be sent/);
    await app.deps.db("messages").where("id", messageId).update({ status: "failed" });
    const switched = await app.request("PATCH", `/admin/applications/${id}`, { admin: true, body: { quota: { billing_currency: "USD" } } });
    assert.equal(switched.status, 200, JSON.stringify(switched.body));
  });

  test("provider credentials are encrypted at rest and never returned", async () => {
    const { id } = await app.createApplication();
    // A real P-256 key: credentials are checked at upload now (src/applications/credentials.test.ts).
    const signingKey = generateApnsSigningKey().privateKeyPem;
    const res = await app.request("PATCH", `/admin/applications/${id}`, {
      admin: true,
      body: { provider_credentials: { apns: { team_id: "TEAM123456", key_id: "KEY1234567", signing_key: signingKey, bundle_id: "com.example.app" } } },
    });
    assert.equal(res.status, 200);
    assert.deepEqual(res.body.data.providers.apns, { team_id: "TEAM123456", key_id: "KEY1234567", bundle_id: "com.example.app", production: true });
    assert.ok(!JSON.stringify(res.body).includes("PRIVATE KEY"));
    const row = await app.deps.db("applications").where("id", id).first();
    assert.ok(row.provider_credentials_ciphertext.startsWith("v2:"));
    assert.ok(!row.provider_credentials_ciphertext.includes("TEAM123456"));
  });

  test("credentials copied from another application's row do not open there: the admin view shows none and new ones can be uploaded", async () => {
    const signingKey = generateApnsSigningKey().privateKeyPem;
    const apns = { team_id: "TEAM123456", key_id: "KEY1234567", signing_key: signingKey, bundle_id: "com.example.b" };
    const a = await app.createApplication();
    const b = await app.createApplication({ provider_credentials: { apns } });
    const sealed = (await app.deps.db("applications").where("id", b.id).first("provider_credentials_ciphertext")).provider_credentials_ciphertext as string;
    await app.deps.db("applications").where("id", a.id).update({ provider_credentials_ciphertext: sealed });
    const view = await app.request("GET", `/admin/applications/${a.id}`, { admin: true });
    assert.equal(view.status, 200, JSON.stringify(view.body));
    assert.deepEqual(view.body.data.providers, { apns: null, fcm: null }, "B's credentials are not A's");
    const replaced = await app.request("PATCH", `/admin/applications/${a.id}`, { admin: true, body: { provider_credentials: { apns: { ...apns, bundle_id: "com.example.a" } } } });
    assert.equal(replaced.status, 200, JSON.stringify(replaced.body));
    assert.equal(replaced.body.data.providers.apns.bundle_id, "com.example.a");
    assert.equal((await app.request("GET", `/admin/applications/${b.id}`, { admin: true })).body.data.providers.apns.bundle_id, "com.example.b");
  });

  test("rotation issues a new key; with no grace period the old key stops working at once", async () => {
    const { id, apiKey: oldKey } = await app.createApplication();
    const rotated = await app.request("POST", `/admin/applications/${id}/api-keys`, { admin: true, body: {} });
    assert.equal(rotated.status, 201);
    const newKey = rotated.body.data.api_key;
    assert.equal((await app.request("GET", "/subscriptions", { key: oldKey })).status, 401);
    assert.equal((await app.request("GET", "/subscriptions", { key: newKey })).status, 200);
  });

  test("rotation with a grace period keeps the old key valid until it expires", async () => {
    const { id, apiKey: oldKey } = await app.createApplication();
    const rotated = await app.request("POST", `/admin/applications/${id}/api-keys`, { admin: true, body: { grace_period_seconds: 3600 } });
    assert.equal(rotated.status, 201);
    assert.equal((await app.request("GET", "/subscriptions", { key: oldKey })).status, 200);
    assert.equal((await app.request("GET", "/subscriptions", { key: rotated.body.data.api_key })).status, 200);
    const keys = await app.deps.db("api_keys").where("application_id", id).orderBy("created_at");
    assert.ok(keys[0].expires_at > new Date(Date.now() + 3500_000));
    // Once the grace period is over the old key is refused; the new one goes on.
    await app.deps.db("api_keys").where("id", keys[0].id).update({ expires_at: new Date(Date.now() - 1_000) });
    const expired = await app.request("GET", "/subscriptions", { key: oldKey });
    assert.equal(expired.status, 401);
    assert.equal(expired.body.error.code, "authentication_failed");
    assert.equal((await app.request("GET", "/subscriptions", { key: rotated.body.data.api_key })).status, 200);
  });

  test("a deactivated application is refused", async () => {
    const { id, apiKey: key } = await app.createApplication();
    await app.request("PATCH", `/admin/applications/${id}`, { admin: true, body: { is_active: false } });
    const res = await app.request("GET", "/subscriptions", { key });
    assert.equal(res.status, 403);
    assert.equal(res.body.error.code, "permission_denied");
  });

  test("the application list pages applications created in the same instant in one order (newest id first), and refuses unknown parameters", async () => {
    // Far in the future so they are the list's first page; inactive so nothing else acts on them.
    const sameInstant = new Date("2100-01-01T00:00:00Z");
    const ids = Array.from({ length: 4 }, () => newId()).sort();
    for (const id of ids) await app.deps.db("applications").insert({ id, name: `tie-${id}`, is_active: false, created_at: sameInstant });
    const paged: string[] = [];
    for (let page = 1; page <= ids.length; page++) {
      const res = await app.request("GET", `/admin/applications?per_page=1&page=${page}`, { admin: true });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      paged.push(res.body.data.applications[0].id);
    }
    assert.deepEqual(paged, [...ids].reverse(), "each page its own application, newest id first");
    for (const query of ["is_active=false", "perpage=100"]) {
      const res = await app.request("GET", `/admin/applications?${query}`, { admin: true });
      assert.equal(res.status, 422, query);
      assert.equal(res.body.error.code, "validation_error");
      assert.ok(Object.keys(res.body.error.details.fields).length > 0, JSON.stringify(res.body.error));
    }
  });

  test("bad admin input is rejected with each bad field and nothing written", async () => {
    // Other test files create applications meanwhile: count only what this body would have written.
    const written = () => app.deps.db("applications").where("name", "").count<{ count: number }[]>({ count: "*" });
    const before = await written();
    const res = await app.request("POST", "/admin/applications", { admin: true, body: { name: "", quota: { daily_quota: -1 }, surprise: true, timezone: "Mars/Base" } });
    assert.equal(res.status, 422);
    assert.equal(res.body.error.code, "validation_error");
    assert.deepEqual(Object.keys(res.body.error.details.fields).sort(), ["name", "quota.daily_quota", "surprise", "timezone"]);
    assert.deepEqual(await written(), before);
  });
});

describe("request handling", () => {
  test("malformed JSON answers 400 invalid_request", async () => {
    const res = await app.request("POST", "/admin/applications", { admin: true, rawBody: "{not json", headers: { "Content-Type": "application/json" } });
    assert.equal(res.status, 400);
    assert.equal(res.body.error.code, "invalid_request");
  });

  test("a non-JSON content type answers 400 invalid_request", async () => {
    const res = await app.request("POST", "/admin/applications", { admin: true, rawBody: "name=x", headers: { "Content-Type": "application/x-www-form-urlencoded" } });
    assert.equal(res.status, 400);
    assert.equal(res.body.error.code, "invalid_request");
  });

  test("an oversize body answers 413 payload_too_large", async () => {
    const res = await app.request("POST", "/admin/applications", { admin: true, body: { name: "x".repeat(300 * 1024) } });
    assert.equal(res.status, 413);
    assert.equal(res.body.error.code, "payload_too_large");
  });

  test("requests Node's HTTP parser refuses (oversize headers, not HTTP at all) still answer in the REF-001 envelope", async () => {
    const { port } = new URL(app.url);
    const cases: Array<[request: string, status: number, code: string]> = [
      [`GET /api/v1/subscriptions HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20 * 1024)}\r\n\r\n`, 431, "request_header_too_large"],
      ["NOT HTTP AT ALL\r\n\r\n", 400, "invalid_request"],
    ];
    for (const [request, status, code] of cases) {
      const raw = await rawExchange(Number(port), request);
      const [head, body] = raw.split("\r\n\r\n");
      assert.match(head!, new RegExp(`^HTTP/1.1 ${status} `), code);
      assert.match(head!, /content-type: application\/json/i, code);
      const parsed = JSON.parse(body!);
      assert.equal(parsed.status, "error", code);
      assert.equal(parsed.error.code, code);
    }
  });

  test("a malformed UUID in the path is a validation error naming the field", async () => {
    const res = await app.request("GET", "/admin/applications/not-a-uuid", { admin: true });
    assert.equal(res.status, 422);
    assert.ok("id" in res.body.error.details.fields);
  });

  test("text PostgreSQL cannot store, or absurd nesting, is a validation error naming the field, and nothing is written", async () => {
    const { id, apiKey: key } = await app.createApplication();
    // Sent as text: JSON.stringify itself overflows the stack on this.
    const deep = `{"external_id":"u-deep","properties":{"a":${"[".repeat(6_000)}"leaf"${"]".repeat(6_000)}}}`;
    const cases: Array<[string, string, string, unknown, string]> = [
      ["NUL in a tag value", "POST", "/subscriptions", { type: "iOSPush", token: "ok-nul-tag-0001", tags: { k: "a\u0000b" } }, "tags.k"],
      ["NUL in a field name", "POST", "/subscriptions", { type: "iOSPush", token: "ok-nul-key-0001", tags: { "a\u0000": "b" } }, "tags.a\u0000"],
      ["unpaired surrogate in a tag", "POST", "/subscriptions", { type: "iOSPush", token: "ok-surrogate-01", tags: { k: "x\ud800" } }, "tags.k"],
      ["NUL in a message title", "POST", "/messages", { external_id: "u-1", title: "x\u0000y", body: "b" }, "title"],
      ["unpaired surrogate in message data", "POST", "/messages", { external_id: "u-1", body: "b", data: { k: "\udc00" } }, "data.k"],
      ["NUL in an identify external_id", "POST", "/users/identify", { external_id: "u\u0000" }, "external_id"],
      ["6,000-level properties", "POST", "/users/identify", deep, "properties.a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0"],
      ["NUL in a campaign name", "POST", "/campaigns", { name: "a\u0000b", title: "t", body: "b" }, "name"],
      ["NUL in targeting", "POST", "/campaigns/estimate", { targeting_criteria: { countries: ["K\u0000R"] } }, "targeting_criteria.countries.0"],
      ["NUL in a template name", "POST", "/templates", { name: "t\u0000", channel: "push", body: "b" }, "name"],
      ["NUL in a query parameter", "GET", "/subscriptions?user_id=a%00b", undefined, "user_id"],
      // Sent as text: an object literal's __proto__ sets the prototype instead of a key.
      ["__proto__ as a tag criterion (dropped, it targeted everyone)", "POST", "/campaigns/estimate", '{"targeting_criteria":{"tags":{"__proto__":"vip"}}}', "targeting_criteria.tags.__proto__"],
      ["__proto__ as a subscription tag", "POST", "/subscriptions", '{"type":"iOSPush","token":"ok-proto-tag-0001","tags":{"__proto__":"vip","plan":"pro"}}', "tags.__proto__"],
      ["__proto__ in message data", "POST", "/messages", '{"external_id":"u-1","body":"b","data":{"__proto__":"x","k":"v"}}', "data.__proto__"],
      // Named like Object.prototype's members: an error map built on {} found them "already set" and named no field.
      ["__proto__ at the top of a body", "POST", "/messages", '{"__proto__":{"x":1},"external_id":"u-1","body":"b"}', "__proto__"],
      ["constructor at the top of a body", "POST", "/messages", '{"constructor":1,"external_id":"u-1","body":"b"}', "constructor"],
      ["toString as a query parameter", "GET", "/subscriptions?toString=1", undefined, "toString"],
      // Sent as text: JSON's 1e309 parses to Infinity, which was stored (and pushed) as null.
      ["1e309 in user properties", "POST", "/users/identify", '{"external_id":"u-inf","properties":{"score":1e309}}', "properties.score"],
      ["-1e400 nested in message data", "POST", "/messages", '{"external_id":"u-1","body":"b","data":{"a":{"n":-1e400}}}', "data.a.n"],
    ];
    for (const [what, method, path, body, field] of cases) {
      const payload = body === undefined ? {} : typeof body === "string" ? { rawBody: body, headers: { "Content-Type": "application/json" } } : { body };
      const res = await app.request(method, path, { key, ...payload });
      assert.equal(res.status, 422, `${what}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error.code, "validation_error", what);
      assert.ok(field in res.body.error.details.fields, `${what}: ${JSON.stringify(res.body.error.details.fields)}`);
    }
    for (const table of ["subscriptions", "users", "messages", "message_campaigns", "message_templates"]) {
      const [row] = await app.deps.db(table).where("application_id", id).count<{ n: string }[]>({ n: "*" });
      assert.equal(Number(row?.n), 0, `${table} has rows`);
    }
  });

  test("a path with a broken %-escape or a body that does not inflate is the client's 400, not a 500", async () => {
    for (const path of ["/subscriptions/%E0%A4%A", "/users/%ZZ/subscriptions", "/users/100%"]) {
      const res = await app.request("GET", path, { key: apiKey });
      assert.equal(res.status, 400, path);
      assert.equal(res.body.error.code, "invalid_request", path);
    }
    const res = await app.request("POST", "/subscriptions", { key: apiKey, rawBody: "not gzip at all", headers: { "Content-Type": "application/json", "Content-Encoding": "gzip" } });
    assert.equal(res.status, 400);
    assert.equal(res.body.error.code, "invalid_request");
  });

  test("a route that takes no query parameters refuses one instead of ignoring it (nothing is sent or written)", async () => {
    const { id, apiKey: key } = await app.createApplication();
    const cases: Array<[method: string, path: string, body: unknown]> = [
      ["POST", "/messages?dry_run=true", { external_id: "u-query", body: "b" }],
      ["POST", "/subscriptions?upsert=false", { type: "iOSPush", token: "ok-query-param-01" }],
      ["GET", `/campaigns/${id}/stats?from=2026-01-01T00:00:00Z`, undefined],
    ];
    for (const [method, path, body] of cases) {
      const res = await app.request(method, path, { key, ...(body === undefined ? {} : { body }) });
      assert.equal(res.status, 422, `${method} ${path}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error.details.in, "query", path);
      assert.equal(Object.keys(res.body.error.details.fields).length, 1, path);
    }
    for (const table of ["subscriptions", "messages"]) {
      const [row] = await app.deps.db(table).where("application_id", id).count<{ n: string }[]>({ n: "*" });
      assert.equal(Number(row?.n), 0, `${table} has rows`);
    }
  });

  test("a route that takes no body refuses one with fields instead of ignoring them; an empty {} is fine", async () => {
    const { apiKey: key } = await app.createApplication();
    const scheduledAt = new Date(Date.now() + 3_600_000).toISOString();
    const created = await app.request("POST", "/campaigns", { key, body: { name: "no body", title: "t", body: "b", targeting_criteria: {}, scheduled_at: scheduledAt } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const id = created.body.data.campaign_id as string;
    const refused = await app.request("POST", `/campaigns/${id}/cancel`, { key, body: { reason: "typo in the title" } });
    assert.equal(refused.status, 422, JSON.stringify(refused.body));
    assert.deepEqual([refused.body.error.details.in, refused.body.error.details.fields], ["body", { reason: "unknown field" }]);
    // curl's -d without a Content-Type sends a form: not read, so not ignored either.
    const form = await app.request("POST", `/campaigns/${id}/cancel`, { key, rawBody: "reason=typo", headers: { "Content-Type": "application/x-www-form-urlencoded" } });
    assert.deepEqual([form.status, form.body.error?.code], [400, "invalid_request"], JSON.stringify(form.body));
    assert.equal((await app.request("GET", `/campaigns/${id}`, { key })).body.data.status, "scheduled", "nothing was cancelled");
    const cancelled = await app.request("POST", `/campaigns/${id}/cancel`, { key, body: {} });
    assert.deepEqual([cancelled.status, cancelled.body.data?.status], [200, "cancelled"], JSON.stringify(cancelled.body));
  });

  test("unknown routes answer 404 in the envelope, with a request id header", async () => {
    const res = await app.request("GET", "/nope", { key: apiKey });
    assert.equal(res.status, 404);
    assert.equal(res.body.error.code, "resource_not_found");
    assert.ok(res.headers.get("x-request-id"));
  });

  test("an incoming X-Request-Id is echoed back; one that could forge log fields (spaces, quotes, over 128 characters) is replaced by a new id", async () => {
    const res = await app.request("GET", "/subscriptions", { key: apiKey, headers: { "X-Request-Id": "trace-abc-123" } });
    assert.equal(res.headers.get("x-request-id"), "trace-abc-123");
    for (const unsafe of ['x" level=fatal msg="forged', "a b", "x".repeat(129)]) {
      const replaced = await app.request("GET", "/subscriptions", { key: apiKey, headers: { "X-Request-Id": unsafe } });
      assert.match(replaced.headers.get("x-request-id") ?? "", /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/, unsafe);
    }
  });
});

describe("rate limiting", () => {
  test("each tier's allowance per minute is announced on every answer (basic 300, premium 1,000, enterprise 5,000)", async () => {
    for (const [tier, limit] of [["basic", "300"], ["premium", "1000"], ["enterprise", "5000"]] as const) {
      const { apiKey: key } = await app.createApplication({ rate_limit_tier: tier });
      const res = await app.request("GET", "/subscriptions", { key });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("x-ratelimit-limit"), limit, tier);
      assert.equal(res.headers.get("x-ratelimit-remaining"), String(Number(limit) - 1), tier);
    }
  });

  test("basic tier: 300 requests per minute per key, headers on every answer, then 429", async () => {
    const { apiKey: key, id: applicationId } = await app.createApplication();
    const first = await app.request("GET", "/subscriptions", { key });
    assert.equal(first.headers.get("x-ratelimit-limit"), "300");
    assert.equal(first.headers.get("x-ratelimit-remaining"), "299");
    const reset = Number(first.headers.get("x-ratelimit-reset"));
    assert.ok(reset * 1000 > Date.now() && reset * 1000 <= Date.now() + 61_000);
    // The window is a wall-clock minute: the ~300 requests below must all fall in one, so unless
    // most of this one is left, wait for the next.
    if (reset * 1000 - Date.now() < 30_000) await new Promise((r) => setTimeout(r, reset * 1000 - Date.now() + 100));
    const probe = await app.request("GET", "/subscriptions", { key });
    assert.equal(probe.status, 200);
    const remaining = Number(probe.headers.get("x-ratelimit-remaining"));
    assert.ok(remaining >= 298 && remaining <= 299, `remaining ${remaining}`);
    // Exactly the rest of the allowance succeeds, then the next request is refused.
    let allowed = 0;
    let limited: { status: number; body: any; headers: Headers } | undefined;
    for (let i = 0; i < 310 && !limited; i++) {
      const res = await app.request("GET", "/subscriptions", { key });
      if (res.status === 429) limited = res;
      else allowed += 1;
    }
    assert.ok(limited, "expected a 429 within 310 requests");
    assert.equal(allowed, remaining);
    assert.equal(limited.body.error.code, "rate_limit_exceeded");
    assert.equal(limited.headers.get("x-ratelimit-remaining"), "0");
    assert.ok(Number(limited.headers.get("retry-after")) > 0);
    // Refused again, the same way, for the rest of the minute without counting in PostgreSQL.
    const apiKeyId = (await app.deps.db("api_keys").where("application_id", applicationId).first("id")).id;
    const hits = async () => (await app.deps.db("rate_limit_counters").where("key", `api_key:${apiKeyId}`).sum<{ n: number }[]>({ n: "hits" }))[0]!.n;
    const counted = await hits();
    for (let i = 0; i < 5; i++) {
      const again = await app.request("GET", "/subscriptions", { key });
      assert.equal(again.status, 429);
      assert.equal(again.body.error.code, "rate_limit_exceeded");
      assert.deepEqual(
        ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"].map((h) => again.headers.get(h)),
        ["300", "0", limited.headers.get("x-ratelimit-reset")],
      );
      assert.ok(Number(again.headers.get("retry-after")) > 0);
    }
    assert.equal(await hits(), counted, "refusals after the first cost no database write");
    // An operator's upgrade applies at once, not after the remembered refusal's minute.
    assert.equal((await app.request("PATCH", `/admin/applications/${applicationId}`, { admin: true, body: { rate_limit_tier: "premium" } })).status, 200);
    const upgraded = await app.request("GET", "/subscriptions", { key });
    assert.equal(upgraded.status, 200, JSON.stringify(upgraded.body));
    assert.equal(upgraded.headers.get("x-ratelimit-limit"), "1000");
  });

  test("the count is shared through PostgreSQL, so a second API instance sees it", async () => {
    const { apiKey: key } = await app.createApplication();
    const other = await startTestApp();
    try {
      // The three requests must fall in one wall-clock minute (the window).
      const leftOfMinute = 60_000 - (Date.now() % 60_000);
      if (leftOfMinute < 10_000) await new Promise((r) => setTimeout(r, leftOfMinute + 100));
      await app.request("GET", "/subscriptions", { key });
      await app.request("GET", "/subscriptions", { key });
      const res = await other.request("GET", "/subscriptions", { key });
      assert.ok(Number(res.headers.get("x-ratelimit-remaining")) <= 297);
    } finally {
      await other.close();
    }
  });
});

describe("docs and health", () => {
  test("the OpenAPI 3.1 document lists every route with its schemas", async () => {
    const res = await fetch(`${app.url}/api/v1/openapi.json`);
    const doc = (await res.json()) as any;
    assert.equal(doc.openapi, "3.1.0");
    const create = doc.paths["/admin/applications"].post;
    assert.ok(create.requestBody.content["application/json"].schema.properties.name);
    assert.ok(doc.paths["/admin/applications/{id}"].patch);
  });

  test("the docs page is served", async () => {
    const res = await fetch(`${app.url}/docs`);
    assert.equal(res.status, 200);
    assert.match(await res.text(), /swagger-ui/);
    assert.equal((await fetch(`${app.url}/docs/assets/swagger-ui-bundle.js`)).status, 200);
  });

  test("a saturated database pool answers 503 service_unavailable with Retry-After, not a 500", { timeout: 60_000 }, async () => {
    const small = await startTestApp({ poolMax: 1 });
    const held = await small.deps.db.transaction();
    try {
      // The only connection is taken: the request waits the pool's 10 s acquire timeout.
      const res = await small.request("GET", "/subscriptions", { key: apiKey });
      assert.equal(res.status, 503, JSON.stringify(res.body));
      assert.equal(res.body.error.code, "service_unavailable");
      assert.equal(res.headers.get("retry-after"), "5");
    } finally {
      await held.rollback();
      await small.close();
    }
  });

  test("a statement running past the API's statement timeout is cancelled: 503 with Retry-After, and the pool goes on serving", { timeout: 60_000 }, async () => {
    const timed = await startTestApp({ statementTimeoutMs: 500 });
    const { apiKey: key } = await timed.createApplication();
    const subscription = await createPushSubscription(timed, key);
    // Another session holds the subscription's row (only this test's: a table lock would stall
    // every test file sharing the database), so the update waits on it past the timeout.
    const blocker = await app.deps.db.transaction();
    try {
      await blocker("subscriptions").where("id", subscription.id).forUpdate().first("id");
      const res = await timed.request("PATCH", `/subscriptions/${subscription.id}`, { key, body: { tags: { held: "yes" } } });
      assert.equal(res.status, 503, JSON.stringify(res.body));
      assert.equal(res.body.error.code, "service_unavailable");
      assert.match(res.body.error.message, /did not finish this request in time/);
      assert.equal(res.headers.get("retry-after"), "5");
    } finally {
      await blocker.rollback();
    }
    try {
      assert.equal((await timed.request("PATCH", `/subscriptions/${subscription.id}`, { key, body: { tags: { held: "no" } } })).status, 200);
    } finally {
      await timed.close();
    }
  });

  test("healthz answers while readyz reports the missing worker", async () => {
    assert.equal((await fetch(`${app.url}/healthz`)).status, 200);
    const ready = await fetch(`${app.url}/readyz`);
    const body = (await ready.json()) as any;
    assert.equal(ready.status, 503, "this test app runs no worker on its task queue");
    assert.equal(ready.headers.get("retry-after"), null, "not ready is not a retry-soon answer");
    assert.equal(body.error.details.checks.database.ok, true);
    assert.equal(body.error.details.checks.temporal.ok, true);
    assert.equal(body.error.details.checks.worker.ok, false);
  });
});
