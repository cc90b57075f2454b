import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { startTestApp, type ApiResponse, type TestApp } from "../../test/support/harness";
import { ApiError } from "../http/errors";
import { loadTemplateForSend } from "./repository";
import { MAX_TEMPLATE_SOURCE_CHARS } from "./schemas";
import { createPushSubscription } from "../../test/support/fixtures";

let app: TestApp;
let a: { id: string; apiKey: string };
let b: { id: string; apiKey: string };

// REF-001 §5.1 / §5.3 / §5.7 examples.
const CREATE_EXAMPLE = {
  name: "주문 확인 알림",
  title_template: "{{user_name}}님의 주문이 확인되었습니다",
  body_template: "주문번호 {{order_id}}가 확인되었습니다. 결제금액: {{order_amount}}, 예상 배송일: {{estimated_delivery}}",
  data_template: { action: "open_screen", screen: "order_details", order_id: "{{order_id}}" },
  description: "주문 확인 시 전송되는 알림 템플릿",
};
const UPDATE_EXAMPLE = {
  title_template: "{{user_name}}님, 주문이 확인되었습니다",
  body_template: "주문번호: {{order_id}}\n결제금액: {{order_amount}}\n예상 배송일: {{estimated_delivery}}",
  data_template: { action: "open_screen", screen: "order_details", order_id: "{{order_id}}", highlight: true },
};
const RENDER_VARIABLES = { user_name: "홍길동", order_id: "ORD-12345", order_amount: "35,000원", estimated_delivery: "4월 10일" };

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

function call(key: string, method: string, path: string, body?: unknown): Promise<ApiResponse> {
  return app.request(method, path, { key, body });
}

async function create(key: string, body: Record<string, unknown> = {}): Promise<string> {
  const res = await call(key, "POST", "/templates", { name: `t-${crypto.randomUUID()}`, body_template: "Hello {{name}}", ...body });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body.data.template_id as string;
}

async function counts(applicationId: string): Promise<{ templates: number; versions: number }> {
  const [t] = await app.deps.db("message_templates").where("application_id", applicationId).count<{ count: string }[]>({ count: "*" });
  const [v] = await app.deps.db("message_template_versions").where("application_id", applicationId).count<{ count: string }[]>({ count: "*" });
  return { templates: Number(t!.count), versions: Number(v!.count) };
}

function assertError(res: ApiResponse, status: number, code: string): void {
  assert.equal(res.status, status, JSON.stringify(res.body));
  assert.equal(res.body.status, "error");
  assert.equal(res.body.error.code, code);
}

before(async () => {
  app = await startTestApp();
  // Enterprise tier: these tests make more than the basic tier's 300 requests a minute.
  a = await app.createApplication({ rate_limit_tier: "enterprise" });
  b = await app.createApplication({ rate_limit_tier: "enterprise" });
});
after(async () => {
  await app.close();
});

describe("create and get (REF-001 §5.1, §5.2)", () => {
  test("create answers 201 with exactly the REF-001 fields", async () => {
    const res = await call(a.apiKey, "POST", "/templates", CREATE_EXAMPLE);
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.deepEqual(Object.keys(res.body.data).sort(), ["created_at", "name", "template_id", "version"]);
    assert.equal(res.body.data.name, CREATE_EXAMPLE.name);
    assert.equal(res.body.data.version, 1);
    assert.match(res.body.data.created_at, ISO);

    const got = await call(a.apiKey, "GET", `/templates/${res.body.data.template_id}`);
    assert.equal(got.status, 200);
    const data = got.body.data;
    assert.equal(data.id, res.body.data.template_id);
    assert.equal(data.name, CREATE_EXAMPLE.name);
    assert.equal(data.title_template, CREATE_EXAMPLE.title_template);
    assert.equal(data.body_template, CREATE_EXAMPLE.body_template);
    assert.deepEqual(data.data_template, CREATE_EXAMPLE.data_template);
    assert.equal(data.description, CREATE_EXAMPLE.description);
    assert.equal(data.version, 1);
    assert.equal(data.current_version, 1);
    assert.equal(data.is_active, true);
    assert.equal(data.channel, "push");
    assert.deepEqual(data.variables, []);
    assert.deepEqual(data.options, {});
    assert.match(data.created_at, ISO);
    assert.match(data.updated_at, ISO);
  });

  test("variables, options and a title-only template round-trip", async () => {
    const id = await create(a.apiKey, {
      title_template: "{{greeting}} {{user.name}}",
      body_template: undefined,
      variables: [
        { name: "greeting", default: "안녕하세요", description: "salutation" },
        { name: "user.name", required: true },
      ],
      options: { sound: "default", badge: 1, category: "ORDER", image_url: "https://example.com/a.png", priority: "high", ttl_seconds: 3600 },
      channel: "push",
    });
    const got = await call(a.apiKey, "GET", `/templates/${id}`);
    assert.equal(got.body.data.title_template, "{{greeting}} {{user.name}}");
    assert.equal(got.body.data.body_template, null);
    assert.deepEqual(got.body.data.variables, [
      { name: "greeting", required: false, default: "안녕하세요", description: "salutation" },
      { name: "user.name", required: true },
    ]);
    assert.deepEqual(got.body.data.options, { sound: "default", badge: 1, category: "ORDER", image_url: "https://example.com/a.png", priority: "high", ttl_seconds: 3600 });
  });

  test("an unknown id is 404 template_not_found", async () => {
    assertError(await call(a.apiKey, "GET", `/templates/${crypto.randomUUID()}`), 404, "template_not_found");
  });

  test("the API key is required", async () => {
    const res = await app.request("GET", "/templates");
    assertError(res, 401, "authentication_failed");
  });
});

describe("versions (REF-001 §5.3)", () => {
  test("PUT creates an immutable version 2; ?version=1 still returns the old content", async () => {
    const created = await call(a.apiKey, "POST", "/templates", { ...CREATE_EXAMPLE, name: `order-${crypto.randomUUID()}` });
    const id = created.body.data.template_id as string;
    const before = await call(a.apiKey, "GET", `/templates/${id}`);

    const put = await call(a.apiKey, "PUT", `/templates/${id}`, UPDATE_EXAMPLE);
    assert.equal(put.status, 200, JSON.stringify(put.body));
    assert.deepEqual(Object.keys(put.body.data).sort(), ["id", "updated_at", "version"]);
    assert.equal(put.body.data.id, id);
    assert.equal(put.body.data.version, 2);
    assert.ok(new Date(put.body.data.updated_at) >= new Date(before.body.data.updated_at));

    const current = await call(a.apiKey, "GET", `/templates/${id}`);
    assert.equal(current.body.data.version, 2);
    assert.equal(current.body.data.title_template, UPDATE_EXAMPLE.title_template);
    assert.deepEqual(current.body.data.data_template, UPDATE_EXAMPLE.data_template);
    assert.equal(current.body.data.description, CREATE_EXAMPLE.description, "omitted fields keep their value");

    const old = await call(a.apiKey, "GET", `/templates/${id}?version=1`);
    assert.equal(old.status, 200);
    assert.equal(old.body.data.version, 1);
    assert.equal(old.body.data.current_version, 2);
    assert.equal(old.body.data.title_template, CREATE_EXAMPLE.title_template);
    assert.deepEqual(old.body.data.data_template, CREATE_EXAMPLE.data_template);

    assertError(await call(a.apiKey, "GET", `/templates/${id}?version=3`), 404, "template_not_found");
    assertError(await call(a.apiKey, "GET", `/templates/${id}?version=0`), 422, "validation_error");
    assertError(await call(a.apiKey, "GET", `/templates/${id}?version=abc`), 422, "validation_error");
    assertError(await call(a.apiKey, "GET", `/templates/${id}?version=1e0`), 422, "validation_error");
    // Versions are PostgreSQL integers: past 2^31 - 1 is the caller's mistake, not a database error.
    assertError(await call(a.apiKey, "GET", `/templates/${id}?version=3000000000`), 422, "validation_error");
    assertError(await call(a.apiKey, "POST", `/templates/${id}/render-test`, { version: 3000000000 }), 422, "validation_error");

    const versions = await call(a.apiKey, "GET", `/templates/${id}/versions`);
    assert.equal(versions.status, 200);
    assert.deepEqual(
      versions.body.data.versions.map((v: { version: number; is_current: boolean }) => [v.version, v.is_current]),
      [
        [2, true],
        [1, false],
      ],
    );
    assert.equal(versions.body.data.versions[1].body_template, CREATE_EXAMPLE.body_template);
    assert.deepEqual(versions.body.data.pagination, { page: 1, per_page: 20, total_items: 2, total_pages: 1 });
  });

  test("the database refuses to change a stored version", async () => {
    const id = await create(a.apiKey);
    await assert.rejects(app.deps.db("message_template_versions").where({ template_id: id, version: 1 }).update({ body: "tampered" }), /immutable/);
  });

  test("a metadata-only PUT changes the template without a new version", async () => {
    const id = await create(a.apiKey, { description: "old" });
    const name = `renamed-${crypto.randomUUID()}`;
    const put = await call(a.apiKey, "PUT", `/templates/${id}`, { name, description: null });
    assert.equal(put.status, 200);
    assert.equal(put.body.data.version, 1);
    const got = await call(a.apiKey, "GET", `/templates/${id}`);
    assert.equal(got.body.data.name, name);
    assert.equal(got.body.data.description, null);
    const versions = await call(a.apiKey, "GET", `/templates/${id}/versions`);
    assert.equal(versions.body.data.versions.length, 1);
  });

  test("PUT merges: omitted content carries over, null clears the title", async () => {
    const id = await create(a.apiKey, { title_template: "T {{x}}", body_template: "B", variables: [{ name: "x", required: true }], options: { sound: "ping" } });
    const put = await call(a.apiKey, "PUT", `/templates/${id}`, { title_template: null });
    assert.equal(put.body.data.version, 2);
    const got = await call(a.apiKey, "GET", `/templates/${id}`);
    assert.equal(got.body.data.title_template, null);
    assert.equal(got.body.data.body_template, "B");
    assert.deepEqual(got.body.data.variables, [{ name: "x", required: true }]);
    assert.deepEqual(got.body.data.options, { sound: "ping" });
  });

  test("a PUT that repeats the current content publishes no new version (PUT is idempotent)", async () => {
    const content = {
      title_template: "{{user_name}}",
      body_template: "Order {{order_id}}",
      // Key order jsonb does not keep (it stores shorter keys first).
      data_template: { screen_name: "order", id: "{{order_id}}", nested: { zz: 1, a: [1, { y: 2, x: 1 }] } },
      variables: [{ name: "order_id", required: true }, { name: "user_name", default: "고객" }],
      options: { sound: "ping", badge: 1 },
    };
    const id = await create(a.apiKey, content);
    const before = await call(a.apiKey, "GET", `/templates/${id}`);

    const retried = await call(a.apiKey, "PUT", `/templates/${id}`, content);
    assert.equal(retried.status, 200, JSON.stringify(retried.body));
    assert.equal(retried.body.data.version, 1);
    assert.equal(retried.body.data.updated_at, before.body.data.updated_at, "nothing changed, so updated_at stays");
    // "" and null both mean "no title": clearing an already empty title is no change either.
    const titleOnly = await create(a.apiKey, { title_template: null, body_template: "b" });
    assert.equal((await call(a.apiKey, "PUT", `/templates/${titleOnly}`, { title_template: "" })).body.data.version, 1);

    const changed = await call(a.apiKey, "PUT", `/templates/${id}`, { ...content, body_template: "Order #{{order_id}}" });
    assert.equal(changed.body.data.version, 2);
    const again = await call(a.apiKey, "PUT", `/templates/${id}`, { ...content, body_template: "Order #{{order_id}}" });
    assert.equal(again.body.data.version, 2, "a retried PUT answers the version the first one made");
    // Unchanged content with a metadata change: the metadata applies, the version stays.
    const name = `renamed-${crypto.randomUUID()}`;
    const renamed = await call(a.apiKey, "PUT", `/templates/${id}`, { name, data_template: content.data_template });
    assert.equal(renamed.body.data.version, 2);
    assert.equal((await call(a.apiKey, "GET", `/templates/${id}`)).body.data.name, name);

    const versions = await call(a.apiKey, "GET", `/templates/${id}/versions`);
    assert.deepEqual(versions.body.data.versions.map((v: { version: number }) => v.version), [2, 1]);
  });

  test("concurrent PUTs get consecutive, distinct version numbers", async () => {
    const id = await create(a.apiKey);
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => call(a.apiKey, "PUT", `/templates/${id}`, { body_template: `v${i} {{name}}` })));
    for (const res of results) assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(results.map((r) => r.body.data.version as number).sort((x, y) => x - y), [2, 3, 4, 5, 6, 7, 8, 9]);
    const got = await call(a.apiKey, "GET", `/templates/${id}`);
    assert.equal(got.body.data.current_version, 9);
    const rows = await app.deps.db("message_template_versions").where("template_id", id).orderBy("version");
    assert.deepEqual(rows.map((r: { version: number }) => r.version), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    // The version each PUT reported holds exactly the body that PUT sent.
    for (const [i, res] of results.entries()) {
      assert.equal(rows.find((r: { version: number }) => r.version === res.body.data.version).body, `v${i} {{name}}`);
    }
  });
});

describe("data templates every send would refuse", () => {
  test("null values and the reserved message-id key are refused at create and update; platform-reserved keys are not", async () => {
    const cases: Array<[data_template: Record<string, unknown>, field: string]> = [
      [{ deep_link: null }, "data_template.deep_link"],
      [{ automata_message_id: "y" }, "data_template.automata_message_id"],
    ];
    for (const [data_template, field] of cases) {
      const before = await counts(a.id);
      const res = await call(a.apiKey, "POST", "/templates", { name: `data-${crypto.randomUUID()}`, body_template: "b", data_template });
      assertError(res, 422, "validation_error");
      assert.ok(field in res.body.error.details.fields, JSON.stringify(res.body.error.details));
      assert.deepEqual(await counts(a.id), before, "nothing was written");
      const id = await create(a.apiKey);
      assertError(await call(a.apiKey, "PUT", `/templates/${id}`, { data_template }), 422, "validation_error");
    }
    // An iOS-only or Android-only template may use the other platform's reserved keys; sends check them per recipient.
    for (const data_template of [{ aps: "x" }, { from: "x" }, { nested: { value: null } }]) {
      assert.equal((await call(a.apiKey, "POST", "/templates", { name: `data-${crypto.randomUUID()}`, body_template: "b", data_template })).status, 201, JSON.stringify(data_template));
    }
  });
});

describe("template text is bounded", () => {
  test("a title, body or data template past 8,192 characters of template text is refused at create and update, naming the field, and nothing is written", async () => {
    const long = "{{a}}".repeat(Math.ceil((MAX_TEMPLATE_SOURCE_CHARS + 1) / 5));
    const half = "x".repeat(MAX_TEMPLATE_SOURCE_CHARS / 2);
    const cases: Array<[body: Record<string, unknown>, field: string]> = [
      [{ title_template: long, body_template: "b" }, "title_template"],
      [{ body_template: long }, "body_template"],
      // Two strings each under the bound, together over it: every one is rendered per recipient.
      [{ body_template: "b", data_template: { a: half, nested: { b: `${half}x` } } }, "data_template"],
    ];
    const id = await create(a.apiKey);
    for (const [body, field] of cases) {
      const before = await counts(a.id);
      const res = await call(a.apiKey, "POST", "/templates", { name: `long-${crypto.randomUUID()}`, ...body });
      assertError(res, 422, "validation_error");
      assert.match(JSON.stringify(res.body.error.details.fields[field]), /at most 8192/, JSON.stringify(res.body.error.details));
      assertError(await call(a.apiKey, "PUT", `/templates/${id}`, body), 422, "validation_error");
      assert.deepEqual(await counts(a.id), before, "nothing was written");
    }
    const atTheBound = "y".repeat(MAX_TEMPLATE_SOURCE_CHARS);
    assert.equal((await call(a.apiKey, "POST", "/templates", { name: `long-${crypto.randomUUID()}`, body_template: atTheBound, data_template: { a: atTheBound } })).status, 201);
  });
});

describe("names are unique per application", () => {
  test("a duplicate name is a validation_error on name naming the template that has it (a retried create learns its id), and nothing is written", async () => {
    const name = `dup-${crypto.randomUUID()}`;
    const first = await create(a.apiKey, { name });
    const before = await counts(a.id);
    const res = await call(a.apiKey, "POST", "/templates", { name, body_template: "x" });
    assertError(res, 422, "validation_error");
    assert.deepEqual(Object.keys(res.body.error.details.fields), ["name"]);
    assert.equal(res.body.error.details.template_id, first);
    assert.deepEqual(await counts(a.id), before);

    const other = await create(a.apiKey);
    const renamed = await call(a.apiKey, "PUT", `/templates/${other}`, { name, body_template: "changed" });
    assertError(renamed, 422, "validation_error");
    assert.equal(renamed.body.error.details.template_id, first);
    assert.deepEqual(await counts(a.id), { templates: before.templates + 1, versions: before.versions + 1 }, "the rename's new version was rolled back");
  });

  test("another application may use the same name", async () => {
    const name = `shared-${crypto.randomUUID()}`;
    await create(a.apiKey, { name });
    await create(b.apiKey, { name });
  });
});

describe("disable / enable (REF-001 §5.4, §5.5) and loadTemplateForSend", () => {
  test("disable and enable answer the REF-001 shape and are idempotent", async () => {
    const id = await create(a.apiKey);
    const disabled = await call(a.apiKey, "POST", `/templates/${id}/disable`);
    assert.equal(disabled.status, 200);
    assert.deepEqual(Object.keys(disabled.body.data).sort(), ["id", "is_active", "updated_at"]);
    assert.equal(disabled.body.data.id, id);
    assert.equal(disabled.body.data.is_active, false);
    const again = await call(a.apiKey, "POST", `/templates/${id}/disable`);
    assert.equal(again.body.data.is_active, false);
    assert.equal(again.body.data.updated_at, disabled.body.data.updated_at, "a repeated disable changes nothing");
    assert.equal((await call(a.apiKey, "GET", `/templates/${id}`)).body.data.is_active, false);

    const enabled = await call(a.apiKey, "POST", `/templates/${id}/enable`);
    assert.equal(enabled.status, 200);
    assert.equal(enabled.body.data.is_active, true);
    assert.equal((await call(a.apiKey, "GET", `/templates/${id}`)).body.data.is_active, true);
  });

  test("loadTemplateForSend: current content, template_inactive when disabled, pinned versions", async () => {
    const id = await create(a.apiKey, { title_template: "T", body_template: "B1 {{x}}", variables: [{ name: "x", required: true }], options: { badge: 3 } });
    await call(a.apiKey, "PUT", `/templates/${id}`, { body_template: "B2 {{x}}" });

    const loaded = await loadTemplateForSend(app.deps.db, a.id, id);
    assert.deepEqual(loaded, {
      templateId: id,
      version: 2,
      channel: "push",
      content: { title: "T", body: "B2 {{x}}", dataTemplate: {}, variables: [{ name: "x", required: true }], options: { badge: 3 } },
    });
    assert.equal((await loadTemplateForSend(app.deps.db, a.id, id, 1)).content.body, "B1 {{x}}");

    await call(a.apiKey, "POST", `/templates/${id}/disable`);
    await assert.rejects(loadTemplateForSend(app.deps.db, a.id, id), (e: unknown) => e instanceof ApiError && e.code === "template_inactive" && e.status === 400);
    await call(a.apiKey, "POST", `/templates/${id}/enable`);
    assert.equal((await loadTemplateForSend(app.deps.db, a.id, id)).version, 2);
  });

  test("a template for another channel is not sent as a push: single sends and campaigns answer 422 on template_id and write nothing", async () => {
    const id = await create(a.apiKey, { channel: "email", title_template: "Your receipt", body_template: "Dear {{name}}, …" });
    const rejected = (res: ApiResponse) => {
      assert.equal(res.status, 422, JSON.stringify(res.body));
      assert.equal(res.body.error.code, "validation_error");
      assert.match(res.body.error.details.fields.template_id, /email channel/);
    };
    rejected(await call(a.apiKey, "POST", "/messages/template", { external_id: "u-1", template_id: id, variables: { name: "n" } }));
    rejected(await call(a.apiKey, "POST", "/campaigns", { name: "mail as push", template_id: id, variables: { name: "n" }, targeting_criteria: { tags: { nobody: "x" } } }));
    assert.equal(Number((await app.deps.db("messages").where("application_id", a.id).count<{ count: string }[]>({ count: "*" }))[0]!.count), 0);
    assert.equal(Number((await app.deps.db("message_campaigns").where("application_id", a.id).count<{ count: string }[]>({ count: "*" }))[0]!.count), 0);
    // render-test still works: the content itself is fine.
    assert.equal((await call(a.apiKey, "POST", `/templates/${id}/render-test`, { variables: { name: "n" } })).status, 200);
  });

  test("loadTemplateForSend: template_not_found for unknown, malformed, other-tenant ids and missing versions", async () => {
    const id = await create(a.apiKey);
    const notFound = (e: unknown) => e instanceof ApiError && e.code === "template_not_found" && e.status === 404;
    await assert.rejects(loadTemplateForSend(app.deps.db, a.id, crypto.randomUUID()), notFound);
    await assert.rejects(loadTemplateForSend(app.deps.db, a.id, "not-a-uuid"), notFound);
    await assert.rejects(loadTemplateForSend(app.deps.db, b.id, id), notFound);
    await assert.rejects(loadTemplateForSend(app.deps.db, a.id, id, 7), notFound);
  });
});

describe("render-test (REF-001 §5.7)", () => {
  test("renders the REF-001 example exactly", async () => {
    const id = await create(a.apiKey, { ...CREATE_EXAMPLE, name: `order-${crypto.randomUUID()}` });
    await call(a.apiKey, "PUT", `/templates/${id}`, UPDATE_EXAMPLE);
    const res = await call(a.apiKey, "POST", `/templates/${id}/render-test`, { variables: RENDER_VARIABLES });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(res.body.data, {
      title: "홍길동님, 주문이 확인되었습니다",
      body: "주문번호: ORD-12345\n결제금액: 35,000원\n예상 배송일: 4월 10일",
      data: { action: "open_screen", screen: "order_details", order_id: "ORD-12345", highlight: true },
      version: 2,
      missing_variables: [],
      warnings: [],
    });
    const old = await call(a.apiKey, "POST", `/templates/${id}/render-test`, { variables: RENDER_VARIABLES, version: 1 });
    assert.equal(old.body.data.title, "홍길동님의 주문이 확인되었습니다");
    assert.equal(old.body.data.version, 1);
  });

  test("no HTML escaping in the output", async () => {
    const id = await create(a.apiKey, { body_template: "{{x}}" });
    const res = await call(a.apiKey, "POST", `/templates/${id}/render-test`, { variables: { x: "<b>Tom & Jerry</b>" } });
    assert.equal(res.body.data.body, "<b>Tom & Jerry</b>");
  });

  test("missing optional variables render from defaults or empty and are reported", async () => {
    const id = await create(a.apiKey, { body_template: "{{greeting}}, {{name}}{{code}}", variables: [{ name: "greeting", default: "Hi" }] });
    const res = await call(a.apiKey, "POST", `/templates/${id}/render-test`, { variables: { name: "Kim" } });
    assert.equal(res.status, 200);
    assert.equal(res.body.data.body, "Hi, Kim");
    assert.deepEqual(res.body.data.missing_variables, ["code", "greeting"]);
    assert.equal(res.body.data.warnings.length, 2);
    const none = await call(a.apiKey, "POST", `/templates/${id}/render-test`, {});
    assert.equal(none.body.data.body, "Hi, ");
  });

  test("a missing required variable is 400 missing_required_variable naming it", async () => {
    const id = await create(a.apiKey, { body_template: "{{order_id}} {{user.name}}", variables: [{ name: "order_id", required: true }, { name: "user.name", required: true }] });
    const res = await call(a.apiKey, "POST", `/templates/${id}/render-test`, { variables: { user: { name: "x" } } });
    assertError(res, 400, "missing_required_variable");
    assert.deepEqual(res.body.error.details.variables, ["order_id"]);
  });

  test("non-scalar variables are 400 invalid_template_variables; a non-object is a validation error", async () => {
    const id = await create(a.apiKey, { body_template: "{{a}}" });
    const res = await call(a.apiKey, "POST", `/templates/${id}/render-test`, { variables: { a: [1], b: null } });
    assertError(res, 400, "invalid_template_variables");
    assert.deepEqual(res.body.error.details.variables, ["a", "b"]);
    assertError(await call(a.apiKey, "POST", `/templates/${id}/render-test`, { variables: "a" }), 422, "validation_error");
    assertError(await call(a.apiKey, "POST", `/templates/${id}/render-test`, { variables: {}, extra: 1 }), 422, "validation_error");
  });

  test("a disabled template can be tested, with a warning; rendered size limits are warned about", async () => {
    const id = await create(a.apiKey, { title_template: "{{t}}", body_template: "b" });
    await call(a.apiKey, "POST", `/templates/${id}/disable`);
    const res = await call(a.apiKey, "POST", `/templates/${id}/render-test`, { variables: { t: "가".repeat(60) } });
    assert.equal(res.status, 200);
    assert.ok(res.body.data.warnings.some((w: string) => /disabled/.test(w)));
    assert.ok(res.body.data.warnings.some((w: string) => /180 bytes/.test(w)), JSON.stringify(res.body.data.warnings));
  });
});

describe("render-test warns about what a send would refuse", () => {
  // Each case passed render-test without a word and then failed every send (or every send to one platform).
  const cases: Array<[string, Record<string, unknown>, Record<string, unknown>, RegExp]> = [
    ["a data key FCM reserves", { body_template: "b", data_template: { from: "x" } }, {}, /"from" is a reserved FCM data key; sends to Android devices fail with invalid_message_content/],
    ["a data key APNs reserves", { body_template: "b", data_template: { aps: "x" } }, {}, /aps is reserved by APNs; sends to iOS devices fail with invalid_message_content/],
    ["a payload over 4 KB from the rendered data", { body_template: "b", data_template: { blob: "{{blob}}" } }, { blob: "x".repeat(4100) }, /payload is \d+ bytes; the limit is 4096; sends to (iOS|Android) devices fail with message_too_large/],
    ["a title and body that both render empty", { title_template: "{{t}}", body_template: "{{b}}" }, {}, /title and body cannot both be empty; sends fail with invalid_message_content/],
    ["a rendered body over the body limit", { body_template: "{{b}}" }, { b: "x".repeat(4001) }, /body is 4001 bytes; the limit is 4000; sends fail with message_too_large/],
  ];
  for (const [name, template, variables, warning] of cases) {
    test(name, async () => {
      const id = await create(a.apiKey, template);
      const res = await call(a.apiKey, "POST", `/templates/${id}/render-test`, { variables });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.ok(res.body.data.warnings.some((w: string) => warning.test(w)), JSON.stringify(res.body.data.warnings));
    });
  }

  test("a sendable rendering has no warnings", async () => {
    const id = await create(a.apiKey, { title_template: "{{t}}", body_template: "b", data_template: { deep_link: "app://x" }, options: { sound: "ping", ttl_seconds: 60 } });
    const res = await call(a.apiKey, "POST", `/templates/${id}/render-test`, { variables: { t: "T" } });
    assert.deepEqual(res.body.data.warnings, []);
  });
});

describe("list (REF-001 §5.6)", () => {
  test("pagination walks every template once, newest first", async () => {
    const app3 = await app.createApplication({ rate_limit_tier: "enterprise" });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await create(app3.apiKey, { name: `page-${i}` }));
    const seen: string[] = [];
    for (let page = 1; page <= 3; page++) {
      const res = await call(app3.apiKey, "GET", `/templates?per_page=2&page=${page}`);
      assert.equal(res.status, 200);
      assert.deepEqual(res.body.data.pagination, { page, per_page: 2, total_items: 5, total_pages: 3 });
      seen.push(...res.body.data.templates.map((t: { id: string }) => t.id));
    }
    assert.deepEqual(seen, [...ids].reverse());
    const item = (await call(app3.apiKey, "GET", "/templates?per_page=1")).body.data.templates[0];
    assert.deepEqual(Object.keys(item).sort(), ["channel", "created_at", "description", "id", "is_active", "name", "updated_at", "version"]);
    const empty = await call(app3.apiKey, "GET", "/templates?page=9");
    assert.deepEqual(empty.body.data.templates, []);
  });

  test("filters: is_active, search (literal % and _), channel; version is the current version", async () => {
    const app4 = await app.createApplication({ rate_limit_tier: "enterprise" });
    const active = await create(app4.apiKey, { name: "Order shipped" });
    const disabled = await create(app4.apiKey, { name: "order 50% off" });
    const sms = await create(app4.apiKey, { name: "sms_notice", channel: "sms" });
    await call(app4.apiKey, "POST", `/templates/${disabled}/disable`);
    await call(app4.apiKey, "PUT", `/templates/${active}`, { body_template: "v2" });

    const ids = async (query: string) => {
      const res = await call(app4.apiKey, "GET", `/templates${query}`);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body.data.templates.map((t: { id: string }) => t.id).sort();
    };
    assert.deepEqual(await ids("?is_active=true"), [active, sms].sort());
    assert.deepEqual(await ids("?is_active=false"), [disabled]);
    assert.deepEqual(await ids("?search=ORDER"), [active, disabled].sort());
    assert.deepEqual(await ids(`?search=${encodeURIComponent("50%")}`), [disabled]);
    assert.deepEqual(await ids("?search=r_s"), []);
    assert.deepEqual(await ids("?search=sms_"), [sms]);
    assert.deepEqual(await ids("?channel=sms"), [sms]);
    assert.deepEqual(await ids("?is_active=true&search=order"), [active]);
    const list = await call(app4.apiKey, "GET", "/templates");
    assert.equal(list.body.data.templates.find((t: { id: string }) => t.id === active).version, 2);
  });

  test("bad list queries are validation errors", async () => {
    for (const query of ["?per_page=101", "?page=0", "?is_active=yes", "?channel=fax", "?unknown=1", "?search="]) {
      assertError(await call(a.apiKey, "GET", `/templates${query}`), 422, "validation_error");
    }
  });
});

describe("tenant isolation", () => {
  test("another application gets template_not_found on every route and never sees the template", async () => {
    const id = await create(a.apiKey, { name: `private-${crypto.randomUUID()}`, body_template: "secret {{x}}" });
    const before = await counts(a.id);
    const attempts: Array<[string, string, unknown?]> = [
      ["GET", `/templates/${id}`],
      ["GET", `/templates/${id}?version=1`],
      ["PUT", `/templates/${id}`, { body_template: "hijacked" }],
      ["POST", `/templates/${id}/disable`],
      ["POST", `/templates/${id}/enable`],
      ["GET", `/templates/${id}/versions`],
      ["POST", `/templates/${id}/render-test`, { variables: { x: "1" } }],
    ];
    for (const [method, path, body] of attempts) {
      const res = await call(b.apiKey, method, path, body);
      assertError(res, 404, "template_not_found");
      assert.ok(!JSON.stringify(res.body).includes("secret"));
    }
    let page = 1;
    for (;;) {
      const list = await call(b.apiKey, "GET", `/templates?per_page=100&page=${page}`);
      assert.ok(!list.body.data.templates.some((t: { id: string }) => t.id === id));
      if (page >= list.body.data.pagination.total_pages) break;
      page++;
    }
    assert.deepEqual(await counts(a.id), before);
    const got = await call(a.apiKey, "GET", `/templates/${id}`);
    assert.equal(got.body.data.body_template, "secret {{x}}");
    assert.equal(got.body.data.is_active, true);
  });
});

describe("bad input is rejected with nothing written", () => {
  const badCreates: Array<[string, Record<string, unknown>, string[]]> = [
    ["missing name", { body_template: "x" }, ["name"]],
    ["empty name", { name: "  ", body_template: "x" }, ["name"]],
    ["name too long", { name: "n".repeat(201), body_template: "x" }, ["name"]],
    ["neither title nor body", { name: "n" }, ["body_template"]],
    ["both empty", { name: "n", title_template: "", body_template: "" }, ["body_template"]],
    ["wrong types", { name: 5, body_template: ["x"], data_template: "x", description: 1 }, ["name", "body_template", "data_template", "description"]],
    ["unknown fields", { name: "n", body_template: "x", title: "t", surprise: true }, ["title", "surprise"]],
    ["unclosed tag in body", { name: "n", body_template: "Hi {{name" }, ["body_template"]],
    ["unclosed section in title", { name: "n", title_template: "{{#vip}}VIP", body_template: "x" }, ["title_template"]],
    ["malformed mustache deep in data", { name: "n", body_template: "x", data_template: { a: { b: ["ok", "{{oops"] } } }, ["data_template.a.b.1"]],
    ["partials", { name: "n", body_template: "{{> header}}" }, ["body_template"]],
    ["data_template as an array", { name: "n", body_template: "x", data_template: ["a"] }, ["data_template"]],
    ["bad variable name", { name: "n", body_template: "x", variables: [{ name: "1abc" }, { name: "a..b" }, { name: "a-b" }] }, ["variables.0.name", "variables.1.name", "variables.2.name"]],
    ["duplicate variable", { name: "n", body_template: "x", variables: [{ name: "a" }, { name: "a" }] }, ["variables.1.name"]],
    ["required with default", { name: "n", body_template: "x", variables: [{ name: "a", required: true, default: "d" }] }, ["variables.0.default"]],
    // The text default of `user` would leave no object for `user.name`: every render without `user` failed.
    ["default on a variable with nested variables", { name: "n", body_template: "{{user.name}}", variables: [{ name: "user", default: "x" }, { name: "user.name", default: "y" }] }, ["variables.0.default"]],
    ["unknown variable field", { name: "n", body_template: "x", variables: [{ name: "a", type: "string" }] }, ["variables.0.type"]],
    ["bad options", { name: "n", body_template: "x", options: { badge: -1, image_url: "ftp://x/y.png", priority: "urgent", volume: 3 } }, ["options.badge", "options.image_url", "options.priority", "options.volume"]],
    ["bad channel", { name: "n", body_template: "x", channel: "fax" }, ["channel"]],
  ];
  for (const [name, body, fields] of badCreates) {
    test(`POST /templates: ${name}`, async () => {
      const before = await counts(a.id);
      const res = await call(a.apiKey, "POST", "/templates", body);
      assertError(res, 422, "validation_error");
      assert.deepEqual(Object.keys(res.body.error.details.fields).sort(), [...fields].sort());
      assert.deepEqual(await counts(a.id), before);
    });
  }

  test("POST /templates: not JSON at all", async () => {
    const before = await counts(a.id);
    const res = await app.request("POST", "/templates", { key: a.apiKey, rawBody: "{name:", headers: { "Content-Type": "application/json" } });
    assertError(res, 400, "invalid_request");
    assert.deepEqual(await counts(a.id), before);
  });

  test("PUT: bad bodies write no version", async () => {
    const id = await create(a.apiKey, { title_template: null, body_template: "only body" });
    const bad: Array<[Record<string, unknown>, string]> = [
      [{}, "_"],
      [{ body_template: "{{#x}}" }, "body_template"],
      [{ body_template: null }, "body_template"],
      [{ title_template: "", body_template: "" }, "body_template"],
      [{ data_template: { k: "{{" } }, "data_template.k"],
      [{ version: 3 }, "version"],
      [{ is_active: false }, "is_active"],
      [{ name: "" }, "name"],
      [{ variables: [{ name: "user.name" }, { name: "user", default: "x" }] }, "variables.1.default"],
    ];
    for (const [body, field] of bad) {
      const before = await counts(a.id);
      const res = await call(a.apiKey, "PUT", `/templates/${id}`, body);
      assertError(res, 422, "validation_error");
      assert.ok(field in res.body.error.details.fields, `${JSON.stringify(body)} → ${JSON.stringify(res.body.error.details.fields)}`);
      assert.deepEqual(await counts(a.id), before);
    }
    const got = await call(a.apiKey, "GET", `/templates/${id}`);
    assert.equal(got.body.data.version, 1);
    assert.equal(got.body.data.body_template, "only body");
  });

  test("malformed ids are validation errors on every route", async () => {
    const routes: Array<[string, string, unknown?]> = [
      ["GET", "/templates/not-a-uuid"],
      ["PUT", "/templates/not-a-uuid", { body_template: "x" }],
      ["POST", "/templates/not-a-uuid/disable"],
      ["POST", "/templates/not-a-uuid/enable"],
      ["GET", "/templates/not-a-uuid/versions"],
      ["POST", "/templates/not-a-uuid/render-test", { variables: {} }],
    ];
    for (const [method, path, body] of routes) {
      const res = await call(a.apiKey, method, path, body);
      assertError(res, 422, "validation_error");
      assert.ok("id" in res.body.error.details.fields);
    }
  });

  test("unknown ids are template_not_found on every route", async () => {
    const id = crypto.randomUUID();
    const before = await counts(a.id);
    for (const [method, path, body] of [
      ["PUT", `/templates/${id}`, { body_template: "x" }],
      ["POST", `/templates/${id}/disable`],
      ["POST", `/templates/${id}/enable`],
      ["GET", `/templates/${id}/versions`],
      ["POST", `/templates/${id}/render-test`, {}],
    ] as Array<[string, string, unknown?]>) {
      assertError(await call(a.apiKey, method, path, body), 404, "template_not_found");
    }
    assert.deepEqual(await counts(a.id), before);
  });
});

describe("docs", () => {
  test("the OpenAPI document lists the template routes", async () => {
    const doc = (await (await fetch(`${app.url}/api/v1/openapi.json`)).json()) as { paths: Record<string, Record<string, unknown>> };
    assert.ok(doc.paths["/templates"]?.post && doc.paths["/templates"]?.get);
    assert.ok(doc.paths["/templates/{id}"]?.get && doc.paths["/templates/{id}"]?.put);
    for (const path of ["/templates/{id}/disable", "/templates/{id}/enable", "/templates/{id}/render-test"]) assert.ok(doc.paths[path]?.post, path);
    assert.ok(doc.paths["/templates/{id}/versions"]?.get);
  });
});

test("a render that would print far more than any provider takes is refused with message_too_large, and nothing is written", async () => {
  // 8 KB of template repeating one variable: 160 MB of text if it were rendered to the end.
  const id = await create(a.apiKey, { body_template: "{{a}}".repeat(1_600) });
  const huge = { a: "x".repeat(100_000) };
  assertError(await call(a.apiKey, "POST", `/templates/${id}/render-test`, { variables: huge }), 400, "message_too_large");
  const sub = await createPushSubscription(app, a.apiKey);
  const messagesBefore = await app.deps.db("messages").where("application_id", a.id).count<{ count: string }[]>({ count: "*" });
  assertError(await call(a.apiKey, "POST", "/messages/template", { subscription_id: sub.id, template_id: id, variables: huge }), 400, "message_too_large");
  const messagesAfter = await app.deps.db("messages").where("application_id", a.id).count<{ count: string }[]>({ count: "*" });
  assert.equal(messagesAfter[0]!.count, messagesBefore[0]!.count);
  // The same template with a short value renders as usual.
  assert.equal((await call(a.apiKey, "POST", `/templates/${id}/render-test`, { variables: { a: "y" } })).status, 200);
});
