import crypto from "node:crypto";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startTestApp, type ApiResponse, type TestApp } from "../../test/support/harness";
import { changeSubscriptionStatus, type SubscriptionRow } from "./repository";
import { deviceTokenContext } from "./device-token";

let app: TestApp;
/** Application A: most tests run here. */
let keyA: string;
let appA: string;
/** Application B: the other tenant. */
let keyB: string;
let appB: string;

before(async () => {
  app = await startTestApp();
  // enterprise tier: these tests send far more than the basic tier's 300 requests a minute
  ({ id: appA, apiKey: keyA } = await app.createApplication({ rate_limit_tier: "enterprise" }));
  ({ id: appB, apiKey: keyB } = await app.createApplication({ rate_limit_tier: "enterprise" }));
});
after(async () => {
  await app.close();
});

/** A push token the provider simulator accepts, unique per call. */
const pushToken = (prefix = "ok"): string => `${prefix}-${crypto.randomBytes(16).toString("hex")}`;
const uniqueEmail = (): string => `user-${crypto.randomBytes(6).toString("hex")}@example.com`;

const DEVICE_INFO = {
  device_model: "iPhone 13",
  device_os: "iOS 15.4",
  device_language: "ko",
  app_version: "1.0.0",
  sdk_version: "1.0.0",
  country_code: "KR",
  test_type: 0,
};

async function register(key: string, body: Record<string, unknown>): Promise<ApiResponse> {
  return app.request("POST", "/subscriptions", { key, body });
}

/** Registers a fresh iOS subscription in application A and returns its id and token. */
async function newSubscription(extra: Record<string, unknown> = {}, key = keyA): Promise<{ id: string; token: string }> {
  const token = pushToken();
  const res = await register(key, { type: "iOSPush", token, ...extra });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return { id: res.body.data.id, token };
}

async function rowOf(id: string): Promise<SubscriptionRow> {
  const row = await app.deps.db<SubscriptionRow>("subscriptions").where("id", id).first();
  assert.ok(row, `subscription ${id} exists`);
  return row;
}

async function eventsOf(id: string): Promise<Array<{ event_type: string; from_status: number | null; to_status: number | null; reason: string | null; source: string | null; user_id: string | null }>> {
  return app.deps.db("subscription_events").where("subscription_id", id).orderBy("id");
}

/** Row counts that must not move when a request is refused. */
/** Rows of this file's two applications: other test files write to the same tables meanwhile. */
async function writeCounts(): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const table of ["subscriptions", "users", "subscription_events"]) {
    const [row] = await app.deps.db(table).whereIn("application_id", [appA, appB]).count<Array<{ count: string }>>({ count: "*" });
    counts[table] = Number(row?.count);
  }
  return counts;
}

describe("POST /subscriptions", () => {
  test("creates a subscription (201), links the user by external id and records a 'subscribed' event", async () => {
    const token = pushToken();
    const res = await register(keyA, {
      type: "iOSPush",
      token,
      user_id: "u1234567890",
      device_info: { ...DEVICE_INFO, timezone: "Asia/Seoul" },
      tags: { premium_user: true, level: 3, tier: "gold" },
    });
    assert.equal(res.status, 201);
    assert.equal(res.body.status, "success");
    const data = res.body.data;
    assert.equal(data.subscription_id, data.id);
    assert.equal(data.type, "iOSPush");
    assert.equal(data.subscription_status, 1);
    assert.equal(data.user_id, "u1234567890");
    assert.deepEqual(data.device_info, DEVICE_INFO);
    assert.deepEqual(data.tags, { premium_user: "true", level: "3", tier: "gold" });
    assert.equal(data.timezone, "Asia/Seoul");
    assert.equal(data.token_masked, `…${token.slice(-6)}`);
    for (const field of ["created_at", "updated_at", "subscribed_at", "last_active_at"]) assert.ok(!Number.isNaN(Date.parse(data[field])), field);
    assert.ok(!JSON.stringify(res.body).includes(token), "the token is never returned");

    const user = await app.deps.db("users").where({ application_id: appA, external_id: "u1234567890" }).first();
    assert.ok(user);
    const row = await rowOf(data.id);
    assert.equal(row.user_id, user.id);
    assert.equal(row.os_version, "15.4");
    const events = await eventsOf(data.id);
    assert.equal(events.length, 1);
    assert.equal(events[0]!.event_type, "subscribed");
    assert.equal(events[0]!.from_status, null);
    assert.equal(events[0]!.to_status, 1);
    assert.equal(events[0]!.user_id, user.id);
  });

  test("accepts the SDK's application_id (SEQ-001) when it is the key's application, and a top-level timezone", async () => {
    const res = await register(keyA, { application_id: appA, type: "AndroidPush", token: pushToken(), timezone: "Europe/Berlin" });
    assert.equal(res.status, 201);
    assert.equal(res.body.data.timezone, "Europe/Berlin");
    const shouted = await register(keyA, { application_id: appA.toUpperCase(), type: "AndroidPush", token: pushToken() });
    assert.equal(shouted.status, 201, JSON.stringify(shouted.body));
    // Another application's id: refused like /users/identify does (the key decides the tenant), nothing written.
    const token = pushToken();
    const foreign = await register(keyA, { application_id: appB, type: "AndroidPush", token });
    assert.equal(foreign.status, 403, JSON.stringify(foreign.body));
    assert.equal(foreign.body.error.code, "permission_denied");
    assert.equal(foreign.body.error.details.field, "application_id");
    assert.equal((await app.deps.db("subscriptions").where("token_hash", app.deps.secrets.hash(token))).length, 0);
  });

  test("the token is stored only encrypted and as an HMAC, never in clear", async () => {
    const { id, token } = await newSubscription();
    const row = await rowOf(id);
    assert.ok(row.token_ciphertext?.startsWith("v2:"));
    assert.ok(!JSON.stringify(row).includes(token), "no column holds the plain token");
    assert.equal(row.token_hash, app.deps.secrets.hash(token));
    assert.equal(app.deps.secrets.decrypt(row.token_ciphertext!, deviceTokenContext(row.application_id)), token);
    const events = await app.deps.db("subscription_events").where("subscription_id", id);
    assert.ok(!JSON.stringify(events).includes(token));
  });

  test("a token sealed before binding (v1) is sealed again, bound to its application, when the device registers it again or updates to the same token", async () => {
    for (const again of ["register", "update-token"] as const) {
      const { id, token } = await newSubscription();
      // As a release before binding wrote it: opens under any application's context.
      await app.deps.db("subscriptions").where({ id }).update({ token_ciphertext: app.deps.secrets.encrypt(token) });
      assert.ok((await rowOf(id)).token_ciphertext!.startsWith("v1:"));
      const res =
        again === "register"
          ? await register(keyA, { type: "iOSPush", token })
          : await app.request("POST", `/subscriptions/${id}/update-token`, { key: keyA, body: { token } });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const row = await rowOf(id);
      assert.ok(row.token_ciphertext!.startsWith("v2:"), again);
      assert.equal(app.deps.secrets.decrypt(row.token_ciphertext!, deviceTokenContext(row.application_id)), token);
      assert.throws(() => app.deps.secrets.decrypt(row.token_ciphertext!, deviceTokenContext(appB)), "no longer opens as another application's");
    }
  });

  test("e-mail and SMS tokens are validated and normalised, so case and separators do not create duplicates", async () => {
    const email = uniqueEmail();
    const first = await register(keyA, { type: "Email", token: email.toUpperCase() });
    assert.equal(first.status, 201);
    assert.equal(first.body.data.token_masked, `u***@example.com`);
    const again = await register(keyA, { type: "Email", token: email });
    assert.equal(again.status, 200);
    assert.equal(again.body.data.id, first.body.data.id);

    const digits = String(crypto.randomInt(10_000_000, 99_999_999));
    const sms = await register(keyA, { type: "SMS", token: `+82 10-${digits.slice(0, 4)}-${digits.slice(4)}` });
    assert.equal(sms.status, 201);
    assert.equal(sms.body.data.token_masked, `***${digits.slice(-4)}`);
    const smsAgain = await register(keyA, { type: "SMS", token: `+8210${digits}` });
    assert.equal(smsAgain.body.data.id, sms.body.data.id);
  });

  test("a token that does not fit its type is invalid_token (400), nothing is written and the token is not echoed", async () => {
    const before = await writeCounts();
    const cases: Array<[string, string]> = [
      ["iOSPush", "short"],
      ["AndroidPush", "has spaces in it"],
      ["Email", "not-an-email"],
      ["SMS", "01012345678"],
      ["KakaoTalk", "someone@example.com"],
    ];
    for (const [type, token] of cases) {
      const res = await register(keyA, { type, token, user_id: "u-should-not-exist" });
      assert.equal(res.status, 400, `${type} ${token}`);
      assert.equal(res.body.error.code, "invalid_token");
      assert.ok(!JSON.stringify(res.body).includes(token));
    }
    assert.deepEqual(await writeCounts(), before);
  });

  test("an unknown type is invalid_subscription_type (400), not a generic validation error", async () => {
    const before = await writeCounts();
    const res = await register(keyA, { type: "WebPush", token: pushToken() });
    assert.equal(res.status, 400);
    assert.equal(res.body.error.code, "invalid_subscription_type");
    assert.deepEqual(res.body.error.details.supported, ["iOSPush", "AndroidPush", "Email", "SMS", "KakaoTalk", "InAppMessage"]);
    assert.deepEqual(await writeCounts(), before);
  });

  test("malformed bodies are validation_error (422) naming each field, with nothing written", async () => {
    const before = await writeCounts();
    const token = pushToken();
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ type: "iOSPush" }, "token"],
      [{ token }, "type"],
      [{ type: "iOSPush", token: 12345678 }, "token"],
      [{ type: 7, token }, "type"],
      [{ type: "iOSPush", token, surprise: 1 }, "surprise"],
      [{ type: "iOSPush", token, device_info: { ...DEVICE_INFO, battery: 50 } }, "device_info.battery"],
      [{ type: "iOSPush", token, device_info: { test_type: 5 } }, "device_info.test_type"],
      [{ type: "iOSPush", token, device_info: { country_code: "KOR" } }, "device_info.country_code"],
      [{ type: "iOSPush", token, timezone: "Mars/Base" }, "timezone"],
      [{ type: "iOSPush", token, timezone: "+09:00" }, "timezone"],
      [{ type: "iOSPush", token, user_id: "" }, "user_id"],
      [{ type: "iOSPush", token, user_id: 42 }, "user_id"],
      [{ type: "iOSPush", token, tags: { nested: { a: 1 } } }, "tags.nested"],
      [{ type: "iOSPush", token, tags: { ["k".repeat(129)]: "v" } }, "tags"],
      [{ type: "iOSPush", token, tags: { k: "v".repeat(257) } }, "tags.k"],
      [{ type: "iOSPush", token, tags: Object.fromEntries(Array.from({ length: 101 }, (_, i) => [`k${i}`, "v"])) }, "tags"],
      [{ type: "iOSPush", token, application_id: "not-a-uuid" }, "application_id"],
      [{ type: "iOSPush", token, timezone: "Asia/Seoul", device_info: { timezone: "UTC" } }, "timezone"],
    ];
    for (const [body, field] of cases) {
      const res = await register(keyA, body);
      assert.equal(res.status, 422, `${JSON.stringify(body).slice(0, 80)} → ${res.status} ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error.code, "validation_error");
      assert.ok(
        Object.keys(res.body.error.details.fields).some((key) => key === field || key.startsWith(`${field}.`)),
        `${field} in ${JSON.stringify(res.body.error.details.fields)}`,
      );
    }
    const notJson = await app.request("POST", "/subscriptions", { key: keyA, rawBody: "type=iOSPush", headers: { "Content-Type": "application/x-www-form-urlencoded" } });
    assert.equal(notJson.status, 400);
    assert.deepEqual(await writeCounts(), before);
  });
});

describe("duplicate registration (idempotent, like OneSignal)", () => {
  test("the same token again answers 200 with the existing subscription and updates device info and the user link", async () => {
    const token = pushToken();
    const first = await register(keyA, { type: "iOSPush", token, user_id: "dup-user-1", device_info: DEVICE_INFO, tags: { a: "1" } });
    assert.equal(first.status, 201);
    const second = await register(keyA, { type: "iOSPush", token, user_id: "dup-user-2", device_info: { app_version: "1.0.1" }, tags: { b: "2" } });
    assert.equal(second.status, 200);
    assert.equal(second.body.data.id, first.body.data.id);
    assert.equal(second.body.data.user_id, "dup-user-2");
    assert.equal(second.body.data.device_info.app_version, "1.0.1");
    assert.equal(second.body.data.device_info.device_model, "iPhone 13", "fields not sent are kept");
    assert.deepEqual(second.body.data.tags, { a: "1", b: "2" });
    const rows = await app.deps.db("subscriptions").where({ application_id: appA, token_hash: app.deps.secrets.hash(token) });
    assert.equal(rows.length, 1);
    const events = await eventsOf(first.body.data.id);
    assert.deepEqual(
      events.map((e) => e.event_type),
      ["subscribed", "user_linked"],
    );

    const third = await register(keyA, { type: "iOSPush", token });
    assert.equal(third.body.data.user_id, "dup-user-2", "a registration without user_id keeps the link");
  });

  test("re-registering never undoes an opt-out", async () => {
    const { id, token } = await newSubscription();
    assert.equal((await app.request("POST", `/subscriptions/${id}/disable`, { key: keyA })).body.data.subscription_status, -2);
    const again = await register(keyA, { type: "iOSPush", token, device_info: DEVICE_INFO });
    assert.equal(again.status, 200);
    assert.equal(again.body.data.subscription_status, -2);
  });

  test("re-registering the same token clears a delivery error (-10), as update-token does; an API block (-31) stays", async () => {
    const { id, token } = await newSubscription();
    await changeSubscriptionStatus(app.deps.db, { applicationId: appA, subscriptionId: id, toStatus: -10, eventType: "delivery_failed", reason: "BadDeviceToken" });
    const again = await register(keyA, { type: "iOSPush", token, device_info: { ...DEVICE_INFO, test_type: 1 } });
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.body.data.subscription_status, 1);
    const event = (await app.deps.db("subscription_events").where("subscription_id", id).orderBy("created_at", "desc").orderBy("id", "desc").first()) as { event_type: string; from_status: number; to_status: number };
    assert.deepEqual([event.event_type, event.from_status, event.to_status], ["token_updated", -10, 1]);
    await changeSubscriptionStatus(app.deps.db, { applicationId: appA, subscriptionId: id, toStatus: -31, eventType: "disabled" });
    assert.equal((await register(keyA, { type: "iOSPush", token })).body.data.subscription_status, -31);
  });

  test("the same token under another type is a different subscription", async () => {
    const token = pushToken();
    const ios = await register(keyA, { type: "iOSPush", token });
    const android = await register(keyA, { type: "AndroidPush", token });
    assert.equal(ios.status, 201);
    assert.equal(android.status, 201);
    assert.notEqual(ios.body.data.id, android.body.data.id);
  });

  test("10 concurrent identical registrations create exactly one row (and one user), no 500", async () => {
    const token = pushToken();
    const externalId = `concurrent-${crypto.randomUUID()}`;
    const results = await Promise.all(
      Array.from({ length: 10 }, () => register(keyA, { type: "AndroidPush", token, user_id: externalId, device_info: DEVICE_INFO })),
    );
    const statuses = results.map((r) => r.status).sort();
    assert.deepEqual(statuses, [200, 200, 200, 200, 200, 200, 200, 200, 200, 201], JSON.stringify(results.map((r) => r.body)));
    assert.equal(new Set(results.map((r) => r.body.data.id)).size, 1);
    const rows = await app.deps.db("subscriptions").where({ application_id: appA, token_hash: app.deps.secrets.hash(token) });
    assert.equal(rows.length, 1);
    const users = await app.deps.db("users").where({ application_id: appA, external_id: externalId });
    assert.equal(users.length, 1);
    const subscribed = await app.deps.db("subscription_events").where({ subscription_id: rows[0].id, event_type: "subscribed" });
    assert.equal(subscribed.length, 1);
  });
});

describe("GET /subscriptions/:id", () => {
  test("returns the REF-001 §2.2 shape", async () => {
    const { id, token } = await newSubscription({ user_id: "u-get", device_info: DEVICE_INFO, tags: { premium_user: "true" }, timezone: "Asia/Seoul" });
    const res = await app.request("GET", `/subscriptions/${id}`, { key: keyA });
    assert.equal(res.status, 200);
    const data = res.body.data;
    assert.deepEqual(
      Object.keys(data).sort(),
      ["created_at", "device_info", "id", "last_active_at", "subscribed_at", "subscription_status", "tags", "timezone", "token_masked", "type", "unsubscribed_at", "updated_at", "user_id"],
    );
    assert.equal(data.id, id);
    assert.equal(data.user_id, "u-get");
    assert.deepEqual(data.device_info, DEVICE_INFO);
    assert.deepEqual(data.tags, { premium_user: "true" });
    assert.equal(data.unsubscribed_at, null);
    assert.ok(!JSON.stringify(res.body).includes(token));
  });

  test("a missing id is 404 resource_not_found; a malformed id is 422", async () => {
    const missing = await app.request("GET", `/subscriptions/${crypto.randomUUID()}`, { key: keyA });
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error.code, "resource_not_found");
    const malformed = await app.request("GET", "/subscriptions/not-a-uuid", { key: keyA });
    assert.equal(malformed.status, 422);
    assert.ok("id" in malformed.body.error.details.fields);
  });
});

describe("PATCH /subscriptions/:id", () => {
  test("updates only the given device fields, the timezone and merges tags", async () => {
    const { id } = await newSubscription({ device_info: DEVICE_INFO, tags: { keep: "1" } });
    const res = await app.request("PATCH", `/subscriptions/${id}`, {
      key: keyA,
      body: { device_info: { app_version: "1.0.1", device_os: "iOS 17.2.1" }, timezone: "America/New_York", tags: { added: 5 } },
    });
    assert.equal(res.status, 200);
    assert.deepEqual(res.body.data.device_info, { ...DEVICE_INFO, app_version: "1.0.1", device_os: "iOS 17.2.1" });
    assert.equal(res.body.data.timezone, "America/New_York");
    assert.deepEqual(res.body.data.tags, { keep: "1", added: "5" });
    assert.equal((await rowOf(id)).os_version, "17.2.1");
  });

  test("null clears a device field", async () => {
    const { id } = await newSubscription({ device_info: DEVICE_INFO });
    const res = await app.request("PATCH", `/subscriptions/${id}`, { key: keyA, body: { device_info: { device_model: null } } });
    assert.equal(res.status, 200);
    assert.equal(res.body.data.device_info.device_model, null);
  });

  test("a token change works like update-token", async () => {
    const { id } = await newSubscription();
    const token = pushToken();
    const res = await app.request("PATCH", `/subscriptions/${id}`, { key: keyA, body: { token } });
    assert.equal(res.status, 200);
    assert.equal((await rowOf(id)).token_hash, app.deps.secrets.hash(token));
    assert.ok(!JSON.stringify(res.body).includes(token));
    assert.deepEqual(
      (await eventsOf(id)).map((e) => e.event_type),
      ["subscribed", "token_updated"],
    );
  });

  test("empty, unknown or mistyped fields are 422 and change nothing", async () => {
    const { id } = await newSubscription({ device_info: DEVICE_INFO });
    const before = await rowOf(id);
    for (const body of [{}, { type: "Email" }, { device_info: { app_version: 1 } }, { timezone: "Nowhere/City" }, { tags: [] }]) {
      const res = await app.request("PATCH", `/subscriptions/${id}`, { key: keyA, body });
      assert.equal(res.status, 422, JSON.stringify(body));
    }
    const invalidToken = await app.request("PATCH", `/subscriptions/${id}`, { key: keyA, body: { token: "bad token!", device_info: { app_version: "9.9.9" } } });
    assert.equal(invalidToken.status, 400);
    assert.equal(invalidToken.body.error.code, "invalid_token");
    assert.deepEqual(await rowOf(id), before, "a refused PATCH changes nothing, not even the valid part");
  });
});

describe("disable / enable (REF-002 §8.2)", () => {
  test("disable without a body is the user's opt-out: -2, unsubscribed_at set, 'unsubscribed' event", async () => {
    const { id } = await newSubscription();
    const res = await app.request("POST", `/subscriptions/${id}/disable`, { key: keyA });
    assert.equal(res.status, 200);
    assert.equal(res.body.data.subscription_status, -2);
    assert.ok(res.body.data.unsubscribed_at);
    const events = await eventsOf(id);
    assert.deepEqual(events.at(-1), { ...events.at(-1)!, event_type: "unsubscribed", from_status: 1, to_status: -2, reason: "user", source: "api" });

    const again = await app.request("POST", `/subscriptions/${id}/disable`, { key: keyA, body: {} });
    assert.equal(again.status, 200);
    assert.equal((await eventsOf(id)).length, events.length, "a repeated disable writes no event");
  });

  test("the API cannot re-enable a user's opt-out (409); the user can", async () => {
    const { id } = await newSubscription();
    await app.request("POST", `/subscriptions/${id}/disable`, { key: keyA, body: { reason: "user" } });
    for (const options of [{}, { body: {} }, { body: { reason: "api" } }]) {
      const refused = await app.request("POST", `/subscriptions/${id}/enable`, { key: keyA, ...options });
      assert.equal(refused.status, 409);
      assert.equal(refused.body.error.code, "invalid_status_transition");
      assert.equal(refused.body.error.details.required, "user_consent_required");
      assert.equal(refused.body.error.details.subscription_status, -2);
    }
    const apiDisable = await app.request("POST", `/subscriptions/${id}/disable`, { key: keyA, body: { reason: "api" } });
    assert.equal(apiDisable.body.data.subscription_status, -2, "an API disable does not overwrite the user's -2 with an undoable -31");

    const enabled = await app.request("POST", `/subscriptions/${id}/enable`, { key: keyA, body: { reason: "user" } });
    assert.equal(enabled.status, 200);
    assert.equal(enabled.body.data.subscription_status, 1);
    const events = await eventsOf(id);
    assert.deepEqual(
      events.map((e) => [e.event_type, e.from_status, e.to_status]),
      [
        ["subscribed", null, 1],
        ["unsubscribed", 1, -2],
        ["enabled", -2, 1],
      ],
    );
  });

  test("an API disable is -31 and the API can enable it again", async () => {
    const { id } = await newSubscription();
    const disabled = await app.request("POST", `/subscriptions/${id}/disable`, { key: keyA, body: { reason: "api" } });
    assert.equal(disabled.body.data.subscription_status, -31);
    const enabled = await app.request("POST", `/subscriptions/${id}/enable`, { key: keyA });
    assert.equal(enabled.status, 200);
    assert.equal(enabled.body.data.subscription_status, 1);
    assert.ok(Date.parse(enabled.body.data.subscribed_at) >= Date.parse(disabled.body.data.unsubscribed_at));
    assert.deepEqual(
      (await eventsOf(id)).map((e) => e.event_type),
      ["subscribed", "disabled", "enabled"],
    );
  });

  test("bad bodies: unknown reason 422, unknown field 422, non-JSON 400", async () => {
    const { id } = await newSubscription();
    const badReason = await app.request("POST", `/subscriptions/${id}/disable`, { key: keyA, body: { reason: "admin" } });
    assert.equal(badReason.status, 422);
    const unknown = await app.request("POST", `/subscriptions/${id}/enable`, { key: keyA, body: { force: true } });
    assert.equal(unknown.status, 422);
    const notJson = await app.request("POST", `/subscriptions/${id}/disable`, { key: keyA, rawBody: "reason=api", headers: { "Content-Type": "text/plain" } });
    assert.equal(notJson.status, 400);
    assert.equal((await rowOf(id)).subscription_status, 1);
  });

  test("a delivery error (-10) needs a token update, which restores status 1", async () => {
    const { id } = await newSubscription();
    const change = await changeSubscriptionStatus(app.deps.db, { applicationId: appA, subscriptionId: id, toStatus: -10, eventType: "delivery_failed", reason: "Unregistered" });
    assert.deepEqual(change, { subscriptionId: id, fromStatus: 1, toStatus: -10, changed: true });

    for (const reason of ["api", "user"]) {
      const refused = await app.request("POST", `/subscriptions/${id}/enable`, { key: keyA, body: { reason } });
      assert.equal(refused.status, 409);
      assert.equal(refused.body.error.details.required, "token_update_required");
    }
    const token = pushToken();
    const updated = await app.request("POST", `/subscriptions/${id}/update-token`, { key: keyA, body: { token } });
    assert.equal(updated.status, 200);
    assert.equal(updated.body.data.subscription_status, 1);
    assert.ok(updated.body.data.token_updated_at);
    assert.deepEqual(
      (await eventsOf(id)).map((e) => [e.event_type, e.from_status, e.to_status, e.source]),
      [
        ["subscribed", null, 1, "api"],
        ["delivery_failed", 1, -10, "provider"],
        ["token_updated", -10, 1, "api"],
      ],
    );
  });

  test("a provider error never overwrites the user's opt-out", async () => {
    const { id } = await newSubscription();
    await app.request("POST", `/subscriptions/${id}/disable`, { key: keyA });
    const change = await changeSubscriptionStatus(app.deps.db, { applicationId: appA, subscriptionId: id, toStatus: -10, eventType: "delivery_failed" });
    assert.deepEqual(change, { subscriptionId: id, fromStatus: -2, toStatus: -2, changed: false });
    assert.equal((await rowOf(id)).subscription_status, -2);
    assert.equal(await changeSubscriptionStatus(app.deps.db, { applicationId: appB, subscriptionId: id, toStatus: -10, eventType: "delivery_failed" }), null);
  });

  test("a provider's verdict on a token the SDK has replaced since leaves the new token subscribed", async () => {
    const { id, token: oldToken } = await newSubscription();
    const refreshed = await app.request("POST", `/subscriptions/${id}/update-token`, { key: keyA, body: { token: pushToken() } });
    assert.equal(refreshed.status, 200);
    // The send read the old token before the refresh; Apple answers Unregistered for it afterwards.
    const stale = await changeSubscriptionStatus(app.deps.db, { applicationId: appA, subscriptionId: id, toStatus: -10, eventType: "delivery_failed", sentTokenHash: app.deps.secrets.hash(oldToken) });
    assert.deepEqual(stale, { subscriptionId: id, fromStatus: 1, toStatus: 1, changed: false });
    assert.equal((await rowOf(id)).subscription_status, 1);
    const current = await changeSubscriptionStatus(app.deps.db, { applicationId: appA, subscriptionId: id, toStatus: -10, eventType: "delivery_failed", sentTokenHash: (await rowOf(id)).token_hash! });
    assert.equal(current?.changed, true, "the verdict on the token it holds still applies");
  });
});

describe("POST /subscriptions/:id/update-token", () => {
  test("re-encrypts and re-hashes; the old token is free again", async () => {
    const { id, token: oldToken } = await newSubscription();
    const newToken = pushToken();
    const res = await app.request("POST", `/subscriptions/${id}/update-token`, { key: keyA, body: { token: newToken } });
    assert.equal(res.status, 200);
    assert.equal(res.body.data.id, id);
    assert.ok(!JSON.stringify(res.body).includes(newToken));
    const row = await rowOf(id);
    assert.equal(row.token_hash, app.deps.secrets.hash(newToken));
    assert.equal(app.deps.secrets.decrypt(row.token_ciphertext!, deviceTokenContext(row.application_id)), newToken);
    assert.ok(!row.token_ciphertext!.includes(newToken));
    const reuse = await register(keyA, { type: "iOSPush", token: oldToken });
    assert.equal(reuse.status, 201);
  });

  test("another subscription's token is duplicate_subscription (400) and nothing changes", async () => {
    const a = await newSubscription();
    const b = await newSubscription();
    const before = await rowOf(a.id);
    const res = await app.request("POST", `/subscriptions/${a.id}/update-token`, { key: keyA, body: { token: b.token } });
    assert.equal(res.status, 400);
    assert.equal(res.body.error.code, "duplicate_subscription");
    assert.ok(!JSON.stringify(res.body).includes(b.token));
    assert.deepEqual(await rowOf(a.id), before);
  });

  test("invalid tokens are invalid_token; missing or mistyped tokens are 422", async () => {
    const { id } = await newSubscription();
    const invalid = await app.request("POST", `/subscriptions/${id}/update-token`, { key: keyA, body: { token: "nope" } });
    assert.equal(invalid.status, 400);
    assert.equal(invalid.body.error.code, "invalid_token");
    for (const body of [{}, { token: 123 }, { token: pushToken(), extra: 1 }]) {
      assert.equal((await app.request("POST", `/subscriptions/${id}/update-token`, { key: keyA, body })).status, 422);
    }
  });
});

describe("tags", () => {
  test("POST merges (numbers and booleans become strings); DELETE removes keys", async () => {
    const { id } = await newSubscription({ tags: { premium_user: "true" } });
    const added = await app.request("POST", `/subscriptions/${id}/tags`, { key: keyA, body: { tags: { user_level: "gold", score: 42, beta: false, premium_user: "false" } } });
    assert.equal(added.status, 200);
    assert.deepEqual(added.body.data.tags, { premium_user: "false", user_level: "gold", score: "42", beta: "false" });
    const removed = await app.request("DELETE", `/subscriptions/${id}/tags`, { key: keyA, body: { tag_keys: ["user_level", "score", "not-there"] } });
    assert.equal(removed.status, 200);
    assert.deepEqual(removed.body.data.tags, { premium_user: "false", beta: "false" });
    assert.deepEqual((await rowOf(id)).tags, { premium_user: "false", beta: "false" });
  });

  test("at most 100 tags per subscription, across requests", async () => {
    const { id } = await newSubscription({ tags: Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`a${i}`, i])) });
    const tooMany = await app.request("POST", `/subscriptions/${id}/tags`, { key: keyA, body: { tags: Object.fromEntries(Array.from({ length: 41 }, (_, i) => [`b${i}`, i])) } });
    assert.equal(tooMany.status, 422);
    assert.equal(tooMany.body.error.code, "validation_error");
    assert.ok("tags" in tooMany.body.error.details.fields);
    assert.equal(Object.keys((await rowOf(id)).tags).length, 60);
    const overwrite = await app.request("POST", `/subscriptions/${id}/tags`, { key: keyA, body: { tags: { a0: "x", b0: "y" } } });
    assert.equal(overwrite.status, 200, "overwriting existing keys does not count twice");
    assert.equal(Object.keys(overwrite.body.data.tags).length, 61);
  });

  test("bad tag bodies are 422", async () => {
    const { id } = await newSubscription();
    const bad: Array<[string, unknown]> = [
      ["POST", { tags: { k: null } }],
      ["POST", { tags: { k: ["a"] } }],
      ["POST", { tags: { ["k".repeat(129)]: "v" } }],
      ["POST", { tags: { k: "v".repeat(257) } }],
      ["POST", { tag: { k: "v" } }],
      ["DELETE", { tag_keys: [] }],
      ["DELETE", { tag_keys: "k" }],
      ["DELETE", {}],
    ];
    for (const [method, body] of bad) {
      const res = await app.request(method, `/subscriptions/${id}/tags`, { key: keyA, body });
      assert.equal(res.status, 422, `${method} ${JSON.stringify(body).slice(0, 60)}`);
    }
    assert.deepEqual((await rowOf(id)).tags, {});
  });
});

describe("GET /subscriptions", () => {
  test("paginates newest first with total_items and total_pages; per_page over 100 is 422", async () => {
    const { apiKey } = await app.createApplication({ rate_limit_tier: "enterprise" });
    const ids: string[] = [];
    for (let i = 0; i < 25; i++) ids.push((await newSubscription({}, apiKey)).id);
    const page1 = await app.request("GET", "/subscriptions?per_page=10", { key: apiKey });
    assert.equal(page1.status, 200);
    assert.deepEqual(page1.body.data.pagination, { page: 1, per_page: 10, total_items: 25, total_pages: 3 });
    assert.deepEqual(
      page1.body.data.subscriptions.map((s: { id: string }) => s.id),
      ids.slice(-10).reverse(),
    );
    const page3 = await app.request("GET", "/subscriptions?per_page=10&page=3", { key: apiKey });
    assert.equal(page3.body.data.subscriptions.length, 5);
    const defaults = await app.request("GET", "/subscriptions", { key: apiKey });
    assert.deepEqual(defaults.body.data.pagination, { page: 1, per_page: 20, total_items: 25, total_pages: 2 });
    // Codes REF-002 does not define (-1, -100) match nothing: refused, not an empty page.
    for (const query of ["per_page=101", "per_page=0", "page=0", "page=abc", "status=active", "status=-1", "status=-100", "userid=x"]) {
      const res = await app.request("GET", `/subscriptions?${query}`, { key: apiKey });
      assert.equal(res.status, 422, query);
      assert.equal(res.body.error.code, "validation_error");
    }
  });

  test("filters by user_id (external id), type and status", async () => {
    const { apiKey } = await app.createApplication({ rate_limit_tier: "enterprise" });
    const ios = await newSubscription({ user_id: "alice" }, apiKey);
    const email = await register(apiKey, { type: "Email", token: uniqueEmail(), user_id: "alice" });
    await newSubscription({ user_id: "bob" }, apiKey);
    await app.request("POST", `/subscriptions/${ios.id}/disable`, { key: apiKey });

    const alice = await app.request("GET", "/subscriptions?user_id=alice", { key: apiKey });
    assert.equal(alice.body.data.pagination.total_items, 2);
    assert.ok(alice.body.data.subscriptions.every((s: { user_id: string }) => s.user_id === "alice"));
    const emails = await app.request("GET", "/subscriptions?type=Email", { key: apiKey });
    assert.deepEqual(
      emails.body.data.subscriptions.map((s: { id: string }) => s.id),
      [email.body.data.id],
    );
    const unsubscribed = await app.request("GET", "/subscriptions?status=-2", { key: apiKey });
    assert.deepEqual(
      unsubscribed.body.data.subscriptions.map((s: { id: string }) => s.id),
      [ios.id],
    );
    const combined = await app.request("GET", "/subscriptions?user_id=alice&type=iOSPush&status=1", { key: apiKey });
    assert.equal(combined.body.data.pagination.total_items, 0);
    // REF-002: any positive value is SUBSCRIBED, so any positive filter lists the subscribed ones.
    for (const code of ["1", "2"]) {
      const subscribed = await app.request("GET", `/subscriptions?status=${code}`, { key: apiKey });
      assert.equal(subscribed.body.data.pagination.total_items, 2, `status=${code}`);
      assert.ok(subscribed.body.data.subscriptions.every((s: { subscription_status: number }) => s.subscription_status > 0));
    }
    const nobody = await app.request("GET", "/subscriptions?user_id=carol", { key: apiKey });
    assert.equal(nobody.body.data.pagination.total_items, 0);
    const badType = await app.request("GET", "/subscriptions?type=Pigeon", { key: apiKey });
    assert.equal(badType.status, 400);
    assert.equal(badType.body.error.code, "invalid_subscription_type");
  });
});

describe("tenant isolation", () => {
  test("another application's subscription answers 404 exactly like a missing one, on every endpoint", async () => {
    const { id } = await newSubscription({ tags: { a: "1" }, device_info: DEVICE_INFO });
    const before = await rowOf(id);
    const eventsBefore = (await eventsOf(id)).length;
    const missingId = crypto.randomUUID();
    const calls: Array<[string, string, unknown]> = [
      ["GET", "", undefined],
      ["PATCH", "", { device_info: { app_version: "6.6.6" } }],
      ["POST", "/disable", { reason: "api" }],
      ["POST", "/enable", { reason: "user" }],
      ["POST", "/update-token", { token: pushToken() }],
      ["POST", "/tags", { tags: { b: "2" } }],
      ["DELETE", "/tags", { tag_keys: ["a"] }],
    ];
    for (const [method, suffix, body] of calls) {
      const foreign = await app.request(method, `/subscriptions/${id}${suffix}`, { key: keyB, body });
      const missing = await app.request(method, `/subscriptions/${missingId}${suffix}`, { key: keyB, body });
      assert.equal(foreign.status, 404, `${method} ${suffix}`);
      assert.equal(foreign.body.error.code, "resource_not_found");
      assert.deepEqual({ ...foreign.body.error, details: {} }, { ...missing.body.error, details: {} }, "indistinguishable from a missing id");
    }
    assert.deepEqual(await rowOf(id), before);
    assert.equal((await eventsOf(id)).length, eventsBefore);
  });

  test("lists never show another application's rows, and the same token is a separate subscription per application", async () => {
    const { id, token } = await newSubscription({ user_id: "shared-user" });
    const listB = await app.request("GET", "/subscriptions?per_page=100", { key: keyB });
    assert.ok(!listB.body.data.subscriptions.some((s: { id: string }) => s.id === id));
    const byUser = await app.request("GET", "/subscriptions?user_id=shared-user", { key: keyB });
    assert.equal(byUser.body.data.pagination.total_items, 0);
    const inB = await register(keyB, { type: "iOSPush", token, user_id: "shared-user" });
    assert.equal(inB.status, 201);
    assert.notEqual(inB.body.data.id, id);
    const [countB] = await app.deps.db("subscriptions").where("application_id", appB).count<Array<{ count: string }>>({ count: "*" });
    const listed = await app.request("GET", "/subscriptions?per_page=1", { key: keyB });
    assert.equal(listed.body.data.pagination.total_items, Number(countB!.count));
  });
});
