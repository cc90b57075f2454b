import crypto from "node:crypto";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startTestApp, type ApiResponse, type TestApp } from "../../test/support/harness";
import { createPushSubscription } from "../../test/support/fixtures";
import { newId } from "../db/ids";
import { trimExternalIds } from "../../migrations/20261201000400_message_request_hash_conversion_deadline";

// Every endpoint that takes an external user id (body, query or path) trims it the same way: an id
// written by any of them with whitespace around it is found by all the others with other padding.

let app: TestApp;
let apiKey: string;
let applicationId: string;

before(async () => {
  app = await startTestApp();
  ({ apiKey, id: applicationId } = await app.createApplication({ rate_limit_tier: "enterprise" }));
});
after(async () => {
  await app.close();
});

const padded = (id: string) => `  ${id}\t`;
const pathPadded = (id: string) => encodeURIComponent(` ${id} `);

/** Ways to create a user (with a subscribed push device) from a padded external id. */
const writers: Array<{ name: string; write: (externalId: string) => Promise<void> }> = [
  {
    name: "POST /users/identify {external_id}",
    write: async (externalId) => {
      const sub = await createPushSubscription(app, apiKey);
      const res = await app.request("POST", "/users/identify", { key: apiKey, body: { external_id: padded(externalId), subscription_id: sub.id } });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.data.external_id, externalId, "identify answers the id as stored: trimmed");
    },
  },
  {
    name: "POST /subscriptions {user_id}",
    write: async (externalId) => {
      await createPushSubscription(app, apiKey, { externalId: padded(externalId) });
    },
  },
];

/** Every endpoint that reads an external id; each must find the user the writer stored. */
const readers: Array<{ name: string; read: (externalId: string) => Promise<ApiResponse>; found: (res: ApiResponse) => boolean }> = [
  {
    name: "GET /users/:external_id/subscriptions",
    read: (id) => app.request("GET", `/users/${pathPadded(id)}/subscriptions`, { key: apiKey }),
    found: (res) => res.status === 200 && res.body.data.subscriptions.length === 1,
  },
  {
    name: "GET /subscriptions?user_id=",
    read: (id) => app.request("GET", `/subscriptions?user_id=${pathPadded(id)}`, { key: apiKey }),
    found: (res) => res.status === 200 && res.body.data.subscriptions.length === 1,
  },
  {
    name: "POST /messages {external_id}",
    read: (id) => app.request("POST", "/messages", { key: apiKey, body: { external_id: padded(id), body: "hi" } }),
    found: (res) => res.status === 201 && res.body.data.message_ids.length === 1,
  },
  {
    name: "GET /messages?external_id=",
    read: async (id) => {
      const sent = await app.request("POST", "/messages", { key: apiKey, body: { external_id: id, body: "hi" } });
      assert.equal(sent.status, 201, JSON.stringify(sent.body));
      return app.request("GET", `/messages?external_id=${pathPadded(id)}`, { key: apiKey });
    },
    found: (res) => res.status === 200 && res.body.data.pagination.total_items === 1,
  },
  {
    name: "POST /users/identify {external_id} (finds, does not create)",
    read: async (id) => {
      const res = await app.request("POST", "/users/identify", { key: apiKey, body: { external_id: ` ${id}` } });
      const users = await app.deps.db("users").where({ application_id: applicationId }).whereIn("external_id", [id, ` ${id}`]);
      return { ...res, body: { ...res.body, users: users.length } };
    },
    found: (res) => res.status === 200 && res.body.users === 1,
  },
  {
    name: "POST /users/logout {external_id} guard",
    read: async (id) => {
      const [sub] = await app.deps.db("subscriptions as s").join("users as u", "u.id", "s.user_id").where({ "u.application_id": applicationId, "u.external_id": id }).select("s.id");
      return app.request("POST", "/users/logout", { key: apiKey, body: { subscription_id: sub.id, external_id: padded(id) } });
    },
    found: (res) => res.status === 200 && res.body.data.unlinked_subscriptions.length === 1,
  },
  {
    name: "DELETE /users/:external_id",
    read: (id) => app.request("DELETE", `/users/${pathPadded(id)}`, { key: apiKey }),
    found: (res) => res.status === 202,
  },
];

describe("external user ids are trimmed by every endpoint", () => {
  for (const writer of writers) {
    test(`written by ${writer.name}, found by every reader`, async () => {
      for (const reader of readers) {
        const externalId = `ws-${crypto.randomUUID()}`;
        await writer.write(externalId);
        const stored = await app.deps.db("users").where({ application_id: applicationId }).whereILike("external_id", `%${externalId}%`).select("external_id");
        assert.deepEqual(stored, [{ external_id: externalId }], `${writer.name} stores the trimmed id`);
        const res = await reader.read(externalId);
        assert.ok(reader.found(res), `${reader.name}: ${res.status} ${JSON.stringify(res.body)}`);
      }
    });
  }

  test("an id that is only whitespace is a validation error wherever it is taken", async () => {
    const sub = await createPushSubscription(app, apiKey);
    for (const [method, path, body] of [
      ["POST", "/users/identify", { external_id: "  \t" }],
      ["POST", "/users/logout", { subscription_id: sub.id, external_id: "   " }],
      ["POST", "/subscriptions", { type: "iOSPush", token: `ok-${crypto.randomBytes(16).toString("hex")}`, user_id: "  " }],
      ["POST", "/messages", { external_id: "  ", body: "x" }],
      ["GET", `/messages?external_id=${encodeURIComponent("  ")}`, undefined],
      ["GET", `/subscriptions?user_id=${encodeURIComponent("  ")}`, undefined],
      ["GET", `/users/${encodeURIComponent("  ")}/subscriptions`, undefined],
      ["DELETE", `/users/${encodeURIComponent("  ")}`, undefined],
    ] as const) {
      const res = await app.request(method, path, { key: apiKey, body });
      assert.equal(res.status, 422, `${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error.code, "validation_error");
    }
  });
});

describe("migration 20261201000400 trims stored external ids", () => {
  test("trims ids stored with whitespace, one per trimmed value, never onto an id another user has", async () => {
    const { id: appId } = await app.createApplication();
    const tag = crypto.randomUUID();
    const insert = async (externalId: string, createdAt: string) => {
      const id = newId();
      await app.deps.db("users").insert({ id, application_id: appId, external_id: externalId, created_at: createdAt });
      return id;
    };
    const lone = await insert(` lone-${tag}\t`, "2026-01-01T00:00:00Z");
    const taken = await insert(` taken-${tag}`, "2026-01-01T00:00:00Z");
    await insert(`taken-${tag}`, "2026-01-02T00:00:00Z");
    const older = await insert(` twin-${tag}`, "2026-01-01T00:00:00Z");
    const newer = await insert(`twin-${tag} `, "2026-01-02T00:00:00Z");
    const blank = await insert("   ", "2026-01-01T00:00:00Z");
    // What JavaScript's trim (the API's) removes beyond ASCII: the ideographic space of Korean
    // input, NBSP, the BOM.
    const wide = await insert(`\u3000wide-${tag}\u00a0\ufeff`, "2026-01-01T00:00:00Z");

    assert.equal(await trimExternalIds(app.deps.db, appId), 3);
    const idOf = async (id: string) => (await app.deps.db("users").where({ id }).first("external_id")).external_id;
    assert.equal(await idOf(lone), `lone-${tag}`);
    assert.equal(await idOf(taken), ` taken-${tag}`, "left alone: another user already has the trimmed id");
    assert.equal(await idOf(older), `twin-${tag}`, "the oldest of two that trim alike");
    assert.equal(await idOf(newer), `twin-${tag} `);
    assert.equal(await idOf(blank), "   ");
    assert.equal(await idOf(wide), `wide-${tag}`);
    assert.equal(await trimExternalIds(app.deps.db, appId), 0, "idempotent");
  });
});
