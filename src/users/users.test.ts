import crypto from "node:crypto";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startTestApp, type TestApp } from "../../test/support/harness";
import { newId } from "../db/ids";
import { deviceTokenContext } from "../subscriptions/device-token";

let app: TestApp;
let appA: { id: string; apiKey: string };
let appB: { id: string; apiKey: string };

before(async () => {
  app = await startTestApp();
  appA = await app.createApplication();
  appB = await app.createApplication();
});
after(async () => {
  await app.close();
});

/** Inserts a subscription row directly (the subscriptions API is another domain), token sealed as in production. */
async function insertSubscription(applicationId: string, overrides: Record<string, unknown> = {}): Promise<string> {
  const id = newId();
  const token = crypto.randomBytes(32).toString("hex");
  await app.deps.db("subscriptions").insert({
    id,
    application_id: applicationId,
    subscription_type: "iOSPush",
    token_ciphertext: app.deps.secrets.encrypt(token, deviceTokenContext(applicationId)),
    token_hash: app.deps.secrets.hash(token),
    subscription_status: 1,
    subscribed_at: new Date(),
    ...overrides,
  });
  return id;
}

const ext = (label: string): string => `${label}-${crypto.randomUUID()}`;

async function eventsOf(subscriptionId: string): Promise<Array<{ event_type: string; user_id: string | null; reason: string | null; data: Record<string, unknown> }>> {
  return app.deps.db("subscription_events").where({ subscription_id: subscriptionId }).orderBy("created_at").orderBy("id");
}

async function countUsers(applicationId: string): Promise<number> {
  const [row] = await app.deps.db("users").where({ application_id: applicationId }).count<{ count: number }[]>({ count: "*" });
  return Number(row?.count ?? 0);
}

describe("POST /users/identify", () => {
  test("creates the user once, then finds the same user again (REF-001 §3.1 shape)", async () => {
    const externalId = ext("user");
    const first = await app.request("POST", "/users/identify", { key: appA.apiKey, body: { external_id: externalId } });
    assert.equal(first.status, 200);
    assert.equal(first.body.status, "success");
    assert.deepEqual(Object.keys(first.body.data).sort(), ["created_at", "external_id", "user_id"]);
    assert.equal(first.body.data.external_id, externalId);
    const second = await app.request("POST", "/users/identify", { key: appA.apiKey, body: { external_id: externalId } });
    assert.equal(second.status, 200);
    assert.equal(second.body.data.user_id, first.body.data.user_id);
    assert.equal(second.body.data.created_at, first.body.data.created_at);
    const rows = await app.deps.db("users").where({ application_id: appA.id, external_id: externalId });
    assert.equal(rows.length, 1);
    assert.ok(rows[0].last_active_at);
  });

  test("links subscriptions with one user_linked event each; identifying again adds none", async () => {
    const externalId = ext("linker");
    const [s1, s2] = [await insertSubscription(appA.id), await insertSubscription(appA.id, { subscription_type: "AndroidPush" })];
    const res = await app.request("POST", "/users/identify", { key: appA.apiKey, body: { external_id: externalId, subscriptions: [s1, s2] } });
    assert.equal(res.status, 200);
    const userId = res.body.data.user_id;
    for (const id of [s1, s2]) {
      const sub = await app.deps.db("subscriptions").where({ id }).first();
      assert.equal(sub.user_id, userId);
      const events = await eventsOf(id);
      assert.equal(events.length, 1);
      assert.equal(events[0]!.event_type, "user_linked");
      assert.equal(events[0]!.user_id, userId);
      assert.deepEqual(events[0]!.data, { external_id: externalId });
    }
    const again = await app.request("POST", "/users/identify", { key: appA.apiKey, body: { external_id: externalId, subscriptions: [s1], subscription_id: s2 } });
    assert.equal(again.status, 200);
    assert.equal((await eventsOf(s1)).length, 1);
    assert.equal((await eventsOf(s2)).length, 1);
  });

  test("a subscription of another user is re-linked and the event names the previous user", async () => {
    const [alice, bob] = [ext("alice"), ext("bob")];
    const sub = await insertSubscription(appA.id);
    const a = await app.request("POST", "/users/identify", { key: appA.apiKey, body: { external_id: alice, subscription_id: sub } });
    const b = await app.request("POST", "/users/identify", { key: appA.apiKey, body: { external_id: bob, subscriptions: [sub] } });
    assert.equal(b.status, 200);
    assert.equal((await app.deps.db("subscriptions").where({ id: sub }).first()).user_id, b.body.data.user_id);
    const events = await eventsOf(sub);
    assert.equal(events.length, 2);
    assert.equal(events[1]!.event_type, "user_linked");
    assert.equal(events[1]!.user_id, b.body.data.user_id);
    assert.deepEqual(events[1]!.data, { external_id: bob, previous_user_id: a.body.data.user_id, previous_external_id: alice });
  });

  test("10 concurrent identifies of a new external_id make one user and one link", async () => {
    const externalId = ext("race");
    const sub = await insertSubscription(appA.id);
    const responses = await Promise.all(
      Array.from({ length: 10 }, () => app.request("POST", "/users/identify", { key: appA.apiKey, body: { external_id: externalId, subscriptions: [sub] } })),
    );
    assert.deepEqual(
      responses.map((r) => r.status),
      Array(10).fill(200),
    );
    assert.equal(new Set(responses.map((r) => r.body.data.user_id)).size, 1);
    assert.equal((await app.deps.db("users").where({ application_id: appA.id, external_id: externalId })).length, 1);
    assert.equal((await eventsOf(sub)).length, 1);
  });

  test("properties are stored and shallow-merged", async () => {
    const externalId = ext("props");
    await app.request("POST", "/users/identify", { key: appA.apiKey, body: { external_id: externalId, properties: { plan: "free", locale: "ko" } } });
    await app.request("POST", "/users/identify", { key: appA.apiKey, body: { external_id: externalId, properties: { plan: "pro" } } });
    const row = await app.deps.db("users").where({ application_id: appA.id, external_id: externalId }).first();
    assert.deepEqual(row.properties, { plan: "pro", locale: "ko" });
  });

  test("merged properties are bounded: identifies adding keys past 200, or past 64 KiB of JSON, are refused 422 and change nothing", async () => {
    const externalId = ext("growing");
    const identify = (properties: Record<string, unknown>) => app.request("POST", "/users/identify", { key: appA.apiKey, body: { external_id: externalId, properties } });
    const keys = (from: number, count: number) => Object.fromEntries(Array.from({ length: count }, (_, i) => [`k${from + i}`, i]));
    assert.equal((await identify(keys(0, 150))).status, 200);
    const tooMany = await identify(keys(150, 51));
    assert.equal(tooMany.status, 422, JSON.stringify(tooMany.body));
    assert.match(tooMany.body.error.details.fields.properties, /at most 200 keys.*201 keys/);
    const stored = async () => (await app.deps.db("users").where({ application_id: appA.id, external_id: externalId }).first()).properties;
    assert.equal(Object.keys(await stored()).length, 150, "the refused identify merged nothing");
    // Each request is well under the body limit; together they would pass 64 KiB.
    assert.equal((await identify({ big1: "x".repeat(40_000) })).status, 200);
    const tooBig = await identify({ big2: "x".repeat(40_000) });
    assert.equal(tooBig.status, 422, JSON.stringify(tooBig.body));
    assert.equal((await stored()).big2, undefined);
    // Replacing a value (not adding) stays within the bounds.
    assert.equal((await identify({ big1: "y" })).status, 200);
    assert.equal((await identify({ big2: "x".repeat(40_000) })).status, 200);

    // A user stored over the key bound before it existed still identifies, and may replace values, but not grow.
    const legacy = ext("legacy");
    await app.deps.db("users").insert({ id: newId(), application_id: appA.id, external_id: legacy, properties: JSON.stringify(Object.fromEntries(Array.from({ length: 250 }, (_, i) => [`k${i}`, i]))) });
    const identifyLegacy = (body: Record<string, unknown>) => app.request("POST", "/users/identify", { key: appA.apiKey, body: { external_id: legacy, ...body } });
    assert.equal((await identifyLegacy({})).status, 200);
    assert.equal((await identifyLegacy({ properties: { k0: "replaced" } })).status, 200);
    assert.equal((await identifyLegacy({ properties: { k250: 1 } })).status, 422);
  });

  test("accepts the SDK's application_id when it is the key's own, refuses another", async () => {
    const ok = await app.request("POST", "/users/identify", { key: appA.apiKey, body: { external_id: ext("sdk"), application_id: appA.id } });
    assert.equal(ok.status, 200);
    const externalId = ext("sdk-other");
    const bad = await app.request("POST", "/users/identify", { key: appA.apiKey, body: { external_id: externalId, application_id: appB.id } });
    assert.equal(bad.status, 403);
    assert.equal(bad.body.error.code, "permission_denied");
    assert.equal((await app.deps.db("users").where({ external_id: externalId })).length, 0);
  });

  test("bad input is a 422 naming each field, and nothing is written", async () => {
    const before = await countUsers(appA.id);
    const cases: Array<[unknown, string[]]> = [
      [{}, ["external_id"]],
      [{ external_id: "" }, ["external_id"]],
      [{ external_id: "x".repeat(256) }, ["external_id"]],
      [{ external_id: "ok", subscriptions: ["not-a-uuid"] }, ["subscriptions.0"]],
      [{ external_id: "ok", subscriptions: "nope" }, ["subscriptions"]],
      [{ external_id: "ok", properties: ["a"] }, ["properties"]],
      [{ external_id: "ok", surprise: 1 }, ["surprise"]],
      [{ external_id: 42, subscription_id: "zzz" }, ["external_id", "subscription_id"]],
    ];
    for (const [body, fields] of cases) {
      const res = await app.request("POST", "/users/identify", { key: appA.apiKey, body });
      assert.equal(res.status, 422, JSON.stringify(body));
      assert.equal(res.body.error.code, "validation_error");
      assert.deepEqual(Object.keys(res.body.error.details.fields).sort(), fields, JSON.stringify(body));
    }
    const tooMany = await app.request("POST", "/users/identify", { key: appA.apiKey, body: { external_id: "ok", subscriptions: Array.from({ length: 101 }, () => newId()) } });
    assert.equal(tooMany.status, 422);
    const notJson = await app.request("POST", "/users/identify", { key: appA.apiKey, rawBody: "{oops", headers: { "Content-Type": "application/json" } });
    assert.equal(notJson.status, 400);
    const noKey = await app.request("POST", "/users/identify", { body: { external_id: "ok" } });
    assert.equal(noKey.status, 401);
    assert.equal(await countUsers(appA.id), before);
  });

  test("an unknown subscription id is a 404 naming it, and nothing is written", async () => {
    const externalId = ext("ghost");
    const real = await insertSubscription(appA.id);
    const ghost = newId();
    const res = await app.request("POST", "/users/identify", { key: appA.apiKey, body: { external_id: externalId, subscriptions: [real, ghost] } });
    assert.equal(res.status, 404);
    assert.equal(res.body.error.code, "resource_not_found");
    assert.equal(res.body.error.details.id, ghost);
    assert.equal((await app.deps.db("users").where({ external_id: externalId })).length, 0, "the user upsert was rolled back");
    assert.equal((await app.deps.db("subscriptions").where({ id: real }).first()).user_id, null);
    assert.equal((await eventsOf(real)).length, 0);
  });
});

describe("cross-tenant isolation", () => {
  test("app B cannot link app A's subscription: 404 naming it, nothing written", async () => {
    const subA = await insertSubscription(appA.id);
    const subB = await insertSubscription(appB.id);
    const externalId = ext("intruder");
    const res = await app.request("POST", "/users/identify", { key: appB.apiKey, body: { external_id: externalId, subscriptions: [subB, subA] } });
    assert.equal(res.status, 404);
    assert.equal(res.body.error.details.id, subA);
    assert.equal((await app.deps.db("users").where({ external_id: externalId })).length, 0);
    for (const id of [subA, subB]) {
      assert.equal((await app.deps.db("subscriptions").where({ id }).first()).user_id, null);
      assert.equal((await eventsOf(id)).length, 0);
    }
    const logout = await app.request("POST", "/users/logout", { key: appB.apiKey, body: { subscriptions: [subA] } });
    assert.equal(logout.status, 404);
  });

  test("app B can neither see nor delete app A's users, nor read A's erasure requests", async () => {
    const externalId = ext("private");
    const sub = await insertSubscription(appA.id);
    const created = await app.request("POST", "/users/identify", { key: appA.apiKey, body: { external_id: externalId, subscriptions: [sub] } });
    assert.equal(created.status, 200);

    const list = await app.request("GET", `/users/${encodeURIComponent(externalId)}/subscriptions`, { key: appB.apiKey });
    assert.equal(list.status, 404);
    assert.equal(list.body.error.code, "resource_not_found");
    const del = await app.request("DELETE", `/users/${encodeURIComponent(externalId)}`, { key: appB.apiKey });
    assert.equal(del.status, 404);
    assert.equal((await app.deps.db("erasure_requests").where({ external_id: externalId })).length, 0);
    assert.ok(await app.deps.db("users").where({ id: created.body.data.user_id }).first());

    // The same external_id in app B is a different user.
    const inB = await app.request("POST", "/users/identify", { key: appB.apiKey, body: { external_id: externalId } });
    assert.equal(inB.status, 200);
    assert.notEqual(inB.body.data.user_id, created.body.data.user_id);
    const listB = await app.request("GET", `/users/${encodeURIComponent(externalId)}/subscriptions`, { key: appB.apiKey });
    assert.equal(listB.body.data.subscriptions.length, 0);

    const delA = await app.request("DELETE", `/users/${encodeURIComponent(externalId)}`, { key: appA.apiKey });
    assert.equal(delA.status, 202);
    const requestId = delA.body.data.request_id;
    assert.equal((await app.request("GET", `/users/erasure-requests/${requestId}`, { key: appB.apiKey })).status, 404);
    assert.equal((await app.request("GET", `/users/erasure-requests/${requestId}`, { key: appA.apiKey })).status, 200);
  });
});

describe("POST /users/logout", () => {
  test("unlinks the subscriptions and writes user_unlinked; a repeat is a no-op", async () => {
    const externalId = ext("leaver");
    const [s1, s2] = [await insertSubscription(appA.id), await insertSubscription(appA.id)];
    const identified = await app.request("POST", "/users/identify", { key: appA.apiKey, body: { external_id: externalId, subscriptions: [s1, s2] } });
    const userId = identified.body.data.user_id;
    const res = await app.request("POST", "/users/logout", { key: appA.apiKey, body: { subscriptions: [s1, s2], application_id: appA.id } });
    assert.equal(res.status, 200);
    assert.deepEqual(res.body.data, { unlinked_subscriptions: [s1, s2].sort() });
    for (const id of [s1, s2]) {
      const sub = await app.deps.db("subscriptions").where({ id }).first();
      assert.equal(sub.user_id, null);
      assert.equal(sub.subscription_status, 1, "logout keeps the subscription subscribed");
      const events = await eventsOf(id);
      assert.deepEqual(
        events.map((e) => e.event_type),
        ["user_linked", "user_unlinked"],
      );
      assert.equal(events[1]!.user_id, userId);
      assert.equal(events[1]!.reason, "user_logout");
      assert.deepEqual(events[1]!.data, { external_id: externalId });
    }
    const again = await app.request("POST", "/users/logout", { key: appA.apiKey, body: { subscription_id: s1 } });
    assert.deepEqual(again.body.data, { unlinked_subscriptions: [] });
    assert.equal((await eventsOf(s1)).length, 2);
    // The user still exists; only the link is gone.
    const list = await app.request("GET", `/users/${encodeURIComponent(externalId)}/subscriptions`, { key: appA.apiKey });
    assert.equal(list.status, 200);
    assert.equal(list.body.data.subscriptions.length, 0);
  });

  test("with external_id, a late logout does not undo a newer login on the same device", async () => {
    const [first, second] = [ext("first"), ext("second")];
    const sub = await insertSubscription(appA.id);
    await app.request("POST", "/users/identify", { key: appA.apiKey, body: { external_id: first, subscriptions: [sub] } });
    const newer = await app.request("POST", "/users/identify", { key: appA.apiKey, body: { external_id: second, subscriptions: [sub] } });
    const stale = await app.request("POST", "/users/logout", { key: appA.apiKey, body: { subscriptions: [sub], external_id: first } });
    assert.equal(stale.status, 200);
    assert.deepEqual(stale.body.data.unlinked_subscriptions, []);
    assert.equal((await app.deps.db("subscriptions").where({ id: sub }).first()).user_id, newer.body.data.user_id);
  });

  test("with previous_external_id, a retried or late identify does not take the device from a newer login", async () => {
    const [first, second, third] = [ext("first-id"), ext("second-id"), ext("third-id")];
    const sub = await insertSubscription(appA.id);
    const identify = (body: Record<string, unknown>) => app.request("POST", "/users/identify", { key: appA.apiKey, body: { subscriptions: [sub], ...body } });
    // The SDK's first login from an anonymous device: the guard is null.
    const login = await identify({ external_id: first, previous_external_id: null });
    assert.deepEqual(login.body.data.not_linked, []);
    await app.request("POST", "/users/logout", { key: appA.apiKey, body: { subscriptions: [sub], external_id: first } });
    const newer = await identify({ external_id: second, previous_external_id: null });
    // The first login's retry (its answer was lost) arrives now: the device stays the newer user's.
    const late = await identify({ external_id: first, previous_external_id: null });
    assert.equal(late.status, 200, JSON.stringify(late.body));
    assert.deepEqual(late.body.data.not_linked, [sub]);
    assert.equal((await app.deps.db("subscriptions").where({ id: sub }).first()).user_id, newer.body.data.user_id);
    // A switch of account that names the user it replaces goes through.
    const switched = await identify({ external_id: third, previous_external_id: second });
    assert.deepEqual(switched.body.data.not_linked, []);
    assert.equal((await app.deps.db("subscriptions").where({ id: sub }).first()).user_id, switched.body.data.user_id);
    // Without the guard, REF-001's answer as before.
    assert.equal("not_linked" in (await identify({ external_id: third })).body.data, false);
  });

  test("bad input: 422 without subscriptions, 404 for an unknown one; nothing written", async () => {
    const externalId = ext("stay");
    const sub = await insertSubscription(appA.id);
    await app.request("POST", "/users/identify", { key: appA.apiKey, body: { external_id: externalId, subscriptions: [sub] } });
    for (const body of [{}, { subscriptions: [] }, { subscriptions: ["nope"] }, { subscriptions: [sub], extra: true }]) {
      const res = await app.request("POST", "/users/logout", { key: appA.apiKey, body });
      assert.equal(res.status, 422, JSON.stringify(body));
    }
    const ghost = newId();
    const missing = await app.request("POST", "/users/logout", { key: appA.apiKey, body: { subscriptions: [sub, ghost] } });
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error.details.id, ghost);
    const unknownUser = await app.request("POST", "/users/logout", { key: appA.apiKey, body: { subscriptions: [sub], external_id: ext("nobody") } });
    assert.equal(unknownUser.status, 404);
    assert.ok((await app.deps.db("subscriptions").where({ id: sub }).first()).user_id);
    assert.equal((await eventsOf(sub)).length, 1);
  });
});

describe("GET /users/:external_id/subscriptions", () => {
  test("pages through the user's subscriptions without tokens; archived ones are hidden", async () => {
    const externalId = ext("lister@example.com");
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await insertSubscription(appA.id, { subscription_type: i % 2 ? "AndroidPush" : "iOSPush" }));
    const archived = await insertSubscription(appA.id, { archived_at: new Date(), subscription_status: -31 });
    await app.request("POST", "/users/identify", { key: appA.apiKey, body: { external_id: externalId, subscriptions: ids } });
    await app.deps.db("subscriptions").where({ id: archived }).update({ user_id: (await app.deps.db("users").where({ application_id: appA.id, external_id: externalId }).first()).id });

    const path = `/users/${encodeURIComponent(externalId)}/subscriptions`;
    const seen: string[] = [];
    for (let page = 1; page <= 3; page++) {
      const res = await app.request("GET", `${path}?page=${page}&per_page=2`, { key: appA.apiKey });
      assert.equal(res.status, 200);
      assert.deepEqual(res.body.data.pagination, { page, per_page: 2, total_items: 5, total_pages: 3 });
      for (const s of res.body.data.subscriptions) {
        assert.deepEqual(Object.keys(s).sort(), ["created_at", "id", "last_active_at", "subscribed_at", "subscription_status", "type", "unsubscribed_at"]);
        assert.equal(s.subscription_status, 1);
        seen.push(s.id);
      }
      assert.ok(!JSON.stringify(res.body).includes("token"));
    }
    assert.deepEqual(seen.sort(), [...ids].sort());
    const defaults = await app.request("GET", path, { key: appA.apiKey });
    assert.equal(defaults.body.data.pagination.per_page, 20);
    assert.equal(defaults.body.data.subscriptions.length, 5);
  });

  test("unknown user → 404; bad paging → 422", async () => {
    const missing = await app.request("GET", `/users/${ext("missing")}/subscriptions`, { key: appA.apiKey });
    assert.equal(missing.status, 404);
    const externalId = ext("pager");
    await app.request("POST", "/users/identify", { key: appA.apiKey, body: { external_id: externalId } });
    // Digits only: 1e1, 0x10 and " 5" are not another spelling of a page size.
    // A filter this list does not have, or a typo of per_page, is refused rather than ignored.
    for (const q of ["per_page=101", "page=0", "per_page=abc", "per_page=1e1", "per_page=0x10", "page=2.0", "per_page=%205", "type=iOSPush", "perpage=5"]) {
      const res = await app.request("GET", `/users/${externalId}/subscriptions?${q}`, { key: appA.apiKey });
      assert.equal(res.status, 422, q);
    }
  });
});

describe("DELETE /users/:external_id (without a worker)", () => {
  test("unknown user → 404 and no request row", async () => {
    const externalId = ext("absent");
    const res = await app.request("DELETE", `/users/${externalId}`, { key: appA.apiKey });
    assert.equal(res.status, 404);
    assert.equal((await app.deps.db("erasure_requests").where({ external_id: externalId })).length, 0);
    const tooLong = await app.request("DELETE", `/users/${"x".repeat(256)}`, { key: appA.apiKey });
    assert.equal(tooLong.status, 422);
    assert.ok("external_id" in tooLong.body.error.details.fields);
  });

  test("an external_id that looks like a route segment still works", async () => {
    const sub = await insertSubscription(appA.id);
    await app.request("POST", "/users/identify", { key: appA.apiKey, body: { external_id: "erasure-requests", subscriptions: [sub] } });
    const list = await app.request("GET", "/users/erasure-requests/subscriptions", { key: appA.apiKey });
    assert.equal(list.status, 200);
    assert.deepEqual(
      list.body.data.subscriptions.map((s: { id: string }) => s.id),
      [sub],
    );
    const slashed = "team/alice";
    await app.request("POST", "/users/identify", { key: appA.apiKey, body: { external_id: slashed } });
    assert.equal((await app.request("GET", `/users/${encodeURIComponent(slashed)}/subscriptions`, { key: appA.apiKey })).status, 200);
  });

  test("answers 202 pending with a request id; a retry while in flight returns the same request", async () => {
    const externalId = ext("forget-me");
    await app.request("POST", "/users/identify", { key: appA.apiKey, body: { external_id: externalId } });
    const [first, second] = await Promise.all([
      app.request("DELETE", `/users/${externalId}`, { key: appA.apiKey }),
      app.request("DELETE", `/users/${externalId}`, { key: appA.apiKey }),
    ]);
    assert.equal(first.status, 202);
    assert.equal(second.status, 202);
    assert.equal(first.body.data.status, "pending");
    assert.equal(first.body.data.request_id, second.body.data.request_id);
    const rows = await app.deps.db("erasure_requests").where({ application_id: appA.id, external_id: externalId });
    assert.equal(rows.length, 1);
    assert.equal(rows[0].workflow_id, `user-erasure-${first.body.data.request_id}`);
    const description = await app.deps.temporal.workflow.getHandle(rows[0].workflow_id).describe();
    assert.equal(description.taskQueue, app.config.TEMPORAL_TASK_QUEUE);
    assert.equal(description.type, "userErasureWorkflow");

    const got = await app.request("GET", `/users/erasure-requests/${first.body.data.request_id}`, { key: appA.apiKey });
    assert.equal(got.status, 200);
    assert.deepEqual(got.body.data, {
      request_id: first.body.data.request_id,
      status: "pending",
      requested_at: first.body.data.requested_at,
      completed_at: null,
      result: null,
    });
  });

  test("GET of an unknown or malformed erasure request id → 404 / 422", async () => {
    assert.equal((await app.request("GET", `/users/erasure-requests/${newId()}`, { key: appA.apiKey })).status, 404);
    assert.equal((await app.request("GET", `/users/erasure-requests/nope`, { key: appA.apiKey })).status, 422);
  });
});

describe("OpenAPI", () => {
  test("documents the users routes", async () => {
    const doc = (await (await fetch(`${app.url}/api/v1/openapi.json`)).json()) as any;
    assert.ok(doc.paths["/users/identify"].post.requestBody);
    assert.ok(doc.paths["/users/logout"].post);
    assert.ok(doc.paths["/users/{external_id}/subscriptions"].get);
    assert.ok(doc.paths["/users/{external_id}"].delete.responses["202"]);
    assert.ok(doc.paths["/users/erasure-requests/{id}"].get);
  });
});
