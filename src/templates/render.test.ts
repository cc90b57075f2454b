import { describe, test } from "node:test";
import assert from "node:assert/strict";
import Mustache from "mustache";
import { ApiError } from "../http/errors";
import { MAX_RENDERED_CHARS, PARSE_CACHE_MAX_CHARS, parseCacheChars, referencedVariables, renderTemplate, templateSyntaxError, type RenderableTemplate } from "./render";

interface RenderCase {
  name: string;
  template: RenderableTemplate;
  variables: Record<string, unknown>;
  expect: { title?: string | null; body?: string | null; data?: Record<string, unknown>; missing?: string[]; warnings?: number };
}

const cases: RenderCase[] = [
  {
    name: "REF-001 §5.7 example",
    template: {
      title: "{{user_name}}님, 주문이 확인되었습니다",
      body: "주문번호: {{order_id}}\n결제금액: {{order_amount}}\n예상 배송일: {{estimated_delivery}}",
      dataTemplate: { action: "open_screen", screen: "order_details", order_id: "{{order_id}}", highlight: true },
    },
    variables: { user_name: "홍길동", order_id: "ORD-12345", order_amount: "35,000원", estimated_delivery: "4월 10일" },
    expect: {
      title: "홍길동님, 주문이 확인되었습니다",
      body: "주문번호: ORD-12345\n결제금액: 35,000원\n예상 배송일: 4월 10일",
      data: { action: "open_screen", screen: "order_details", order_id: "ORD-12345", highlight: true },
      missing: [],
    },
  },
  {
    name: "escaping is off: HTML metacharacters stay as typed",
    template: { title: "{{t}}", body: "{{b}} {{{b}}} {{&b}}" },
    variables: { t: `<b>&"'`, b: "<i>a & b</i>" },
    expect: { title: `<b>&"'`, body: "<i>a & b</i> <i>a & b</i> <i>a & b</i>" },
  },
  {
    name: "numbers and booleans print as text",
    template: { body: "{{n}} {{f}} {{yes}} {{no}}" },
    variables: { n: 35000, f: 1.5, yes: true, no: false },
    expect: { body: "35000 1.5 true false", missing: [] },
  },
  {
    name: "nested data: every string leaf is a template, other values pass through",
    template: {
      body: "x",
      dataTemplate: { a: { b: ["{{id}}", 2, null, { c: "id={{id}}" }], d: false }, e: 3.5, f: "{{missing}}" },
    },
    variables: { id: "42" },
    expect: { data: { a: { b: ["42", 2, null, { c: "id=42" }], d: false }, e: 3.5, f: "" }, missing: ["missing"] },
  },
  {
    name: "sections: truthy flag renders, falsy hides, inverted shows the else branch",
    template: { body: "{{#vip}}VIP {{/vip}}{{^vip}}member {{/vip}}{{name}}{{#coupon}} ({{coupon}}){{/coupon}}" },
    variables: { vip: true, name: "Kim", coupon: "" },
    expect: { body: "VIP Kim", missing: [] },
  },
  {
    name: "object sections resolve inner names against the object, then outwards",
    template: { body: "{{#user}}{{name}} @ {{shop}}{{/user}}" },
    variables: { user: { name: "Lee" }, shop: "Seoul" },
    expect: { body: "Lee @ Seoul", missing: [] },
  },
  {
    name: "names inside a hidden section are not needed",
    template: { body: "{{#vip}}{{vip_code}}{{/vip}}done" },
    variables: { vip: false },
    expect: { body: "done", missing: [] },
  },
  {
    name: "dotted names read nested objects",
    template: { title: "{{user.name}}", body: "{{user.address.city}} {{user.missing}}" },
    variables: { user: { name: "홍길동", address: { city: "서울" } } },
    expect: { title: "홍길동", body: "서울 ", missing: ["user.missing"] },
  },
  {
    name: "flat dotted keys are the same as nested objects",
    template: { body: "{{user.name}} {{user.id}}" },
    variables: { "user.name": "Park", user: { id: 7 } },
    expect: { body: "Park 7", missing: [] },
  },
  {
    name: "declared defaults fill missing optional variables and are reported",
    template: { body: "{{greeting}} {{user.name}}", variables: [{ name: "greeting", required: false, default: "안녕하세요" }, { name: "user.name", required: false, default: "고객" }] },
    variables: {},
    expect: { body: "안녕하세요 고객", missing: ["greeting", "user.name"], warnings: 2 },
  },
  {
    name: "a supplied value wins over the default",
    template: { body: "{{greeting}}", variables: [{ name: "greeting", required: false, default: "hi" }] },
    variables: { greeting: "yo" },
    expect: { body: "yo", missing: [], warnings: 0 },
  },
  {
    name: "undeclared missing variables render empty with a warning",
    template: { title: "{{a}}-{{b}}", body: "{{a}}" },
    variables: { b: "x" },
    expect: { title: "-x", body: "", missing: ["a"], warnings: 1 },
  },
  {
    name: "declared optional variables without default are reported even when unreferenced",
    template: { body: "hello", variables: [{ name: "unused", required: false }] },
    variables: {},
    expect: { body: "hello", missing: ["unused"], warnings: 1 },
  },
  {
    name: "unicode in templates, names' values and data",
    template: { title: "🎉 {{이름}}", body: "{{emoji}} — ✓ 日本語", dataTemplate: { "키": "{{이름}}🚀" } },
    variables: { 이름: "김철수", emoji: "👍🏽" },
    expect: { title: "🎉 김철수", body: "👍🏽 — ✓ 日本語", data: { "키": "김철수🚀" }, missing: [] },
  },
  {
    name: "prototype properties are not variables",
    template: { body: "[{{constructor}}][{{toString}}][{{name.length}}][{{__proto__}}]" },
    variables: { name: "abc" },
    expect: { body: "[][][][]", missing: ["__proto__", "constructor", "name.length", "toString"] },
  },
  {
    name: "a title-only template renders body as null",
    template: { title: "{{x}}", body: null },
    variables: { x: "t" },
    expect: { title: "t", body: null, data: {} },
  },
  {
    name: "set-delimiter tags still work",
    template: { body: "{{=<% %>=}}<% a %> {{a}}" },
    variables: { a: "A" },
    expect: { body: "A {{a}}" },
  },
  {
    name: "implicit iterator inside a string section",
    template: { body: "{{#code}}[{{.}}]{{/code}}" },
    variables: { code: "X1" },
    expect: { body: "[X1]", missing: [] },
  },
];

describe("renderTemplate", () => {
  for (const c of cases) {
    test(c.name, () => {
      const out = renderTemplate(c.template, c.variables);
      if ("title" in c.expect) assert.equal(out.title, c.expect.title);
      if ("body" in c.expect) assert.equal(out.body, c.expect.body);
      if (c.expect.data) assert.deepEqual(out.data, c.expect.data);
      if (c.expect.missing) assert.deepEqual(out.missingVariables, c.expect.missing);
      if (c.expect.warnings !== undefined) assert.equal(out.warnings.length, c.expect.warnings);
    });
  }

  test("does not touch global mustache state", () => {
    const escape = Mustache.escape;
    renderTemplate({ body: "{{x}}" }, { x: "<&>" });
    assert.equal(Mustache.escape, escape);
    assert.equal(Mustache.render("{{x}}", { x: "<&>" }), "&lt;&amp;&gt;");
  });

  test("does not mutate the caller's variables or the template", () => {
    const variables = { user: { id: 1 } };
    const template = { body: "{{user.name}}", dataTemplate: { a: "{{user.id}}" }, variables: [{ name: "user.name", required: false, default: "x" }] };
    const snapshot = JSON.stringify({ variables, template });
    renderTemplate(template, variables);
    assert.equal(JSON.stringify({ variables, template }), snapshot);
  });

  test("a data key named __proto__ stays data", () => {
    const dataTemplate = JSON.parse('{"__proto__": {"polluted": "{{x}}"}}') as Record<string, unknown>;
    const out = renderTemplate({ body: "b", dataTemplate }, { x: "1" });
    assert.equal(JSON.stringify(out.data), '{"__proto__":{"polluted":"1"}}');
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });
});

interface ErrorCase {
  name: string;
  template: RenderableTemplate;
  variables: unknown;
  code: "missing_required_variable" | "invalid_template_variables";
  variablesInDetails: string[];
}

const errorCases: ErrorCase[] = [
  {
    name: "missing required variables are all listed",
    template: { body: "{{a}} {{b.c}}", variables: [{ name: "a", required: true }, { name: "b.c", required: true }, { name: "d", required: false }] },
    variables: { b: { x: 1 } },
    code: "missing_required_variable",
    variablesInDetails: ["a", "b.c"],
  },
  {
    name: "a required variable must exist even if only declared",
    template: { body: "static", variables: [{ name: "tracking", required: true }] },
    variables: {},
    code: "missing_required_variable",
    variablesInDetails: ["tracking"],
  },
  {
    name: "arrays, nulls are not variables",
    template: { body: "{{a}}" },
    variables: { a: [1, 2], b: null, c: "ok" },
    code: "invalid_template_variables",
    variablesInDetails: ["a", "b"],
  },
  {
    name: "nested bad values are reported with their path",
    template: { body: "{{u.name}}" },
    variables: { u: { name: "x", tags: ["a"] } },
    code: "invalid_template_variables",
    variablesInDetails: ["u.tags"],
  },
  {
    name: "an object printed as text is invalid",
    template: { body: "Hi {{user}}" },
    variables: { user: { name: "x" } },
    code: "invalid_template_variables",
    variablesInDetails: ["user"],
  },
  {
    name: "variables must be an object",
    template: { body: "x" },
    variables: ["a"],
    code: "invalid_template_variables",
    variablesInDetails: ["variables"],
  },
  {
    name: "conflicting flat and nested keys",
    template: { body: "{{user.name}}" },
    variables: { user: "Kim", "user.name": "Lee" },
    code: "invalid_template_variables",
    variablesInDetails: ["user.name"],
  },
  {
    name: "too deeply nested variables",
    template: { body: "x" },
    variables: { a: { b: { c: { d: { e: { f: { g: { h: { i: { j: { k: { l: "deep" } } } } } } } } } } } },
    code: "invalid_template_variables",
    variablesInDetails: ["a.b.c.d.e.f.g.h.i.j.k"],
  },
];

describe("renderTemplate errors", () => {
  for (const c of errorCases) {
    test(c.name, () => {
      assert.throws(
        () => renderTemplate(c.template, c.variables),
        (error: unknown) => {
          assert.ok(error instanceof ApiError);
          assert.equal(error.code, c.code);
          assert.equal(error.status, 400);
          assert.deepEqual(error.details.variables, c.variablesInDetails);
          return true;
        },
      );
    });
  }
});

describe("rendered size budget", () => {
  const repeated = (n: number) => "{{a}}".repeat(n);
  const cases: Array<{ name: string; template: RenderableTemplate; variables: Record<string, unknown>; refused: boolean }> = [
    // 20,000 references to a 100,000-character value: 2 GB of text if rendered to the end.
    { name: "a short template printing a long value thousands of times", template: { body: repeated(20_000) }, variables: { a: "x".repeat(100_000) }, refused: true },
    { name: "spread over data leaves", template: { dataTemplate: Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`k${i}`, repeated(5_000)])) }, variables: { a: "y".repeat(20_000) }, refused: true },
    { name: "inside a section", template: { body: `{{#user}}${"{{name}}".repeat(1_000)}{{/user}}` }, variables: { user: { name: "z".repeat(100) } }, refused: true },
    { name: "one character over", template: { title: "{{a}}", body: "{{a}}!" }, variables: { a: "w".repeat(MAX_RENDERED_CHARS / 2) }, refused: true },
    { name: "exactly the budget", template: { title: "{{a}}", body: "{{a}}" }, variables: { a: "w".repeat(MAX_RENDERED_CHARS / 2) }, refused: false },
  ];
  for (const c of cases) {
    test(`${c.name}: ${c.refused ? "message_too_large" : "rendered"}`, () => {
      if (!c.refused) {
        const rendered = renderTemplate(c.template, c.variables);
        assert.equal((rendered.title?.length ?? 0) + (rendered.body?.length ?? 0), MAX_RENDERED_CHARS);
        return;
      }
      assert.throws(
        () => renderTemplate(c.template, c.variables),
        (error: unknown) => error instanceof ApiError && error.code === "message_too_large" && error.status === 400 && error.details.limit_chars === MAX_RENDERED_CHARS,
      );
    });
  }
  test("each render starts with the whole budget, after a refused one too", () => {
    assert.throws(() => renderTemplate({ body: repeated(100) }, { a: "x".repeat(MAX_RENDERED_CHARS) }));
    assert.equal(renderTemplate({ body: "{{a}}" }, { a: "ok" }).body, "ok");
  });
});

describe("referencedVariables", () => {
  const table: Array<[string | RenderableTemplate, string[]]> = [
    ["Hello {{name}}", ["name"]],
    ["{{a}} {{a}} {{{b}}} {{&c}}", ["a", "b", "c"]],
    ["{{#list}}{{.}} {{item.id}}{{/list}}{{^empty}}x{{/empty}}", ["list", "item.id", "empty"]],
    ["{{! a comment }}plain", []],
    ["{{=<% %>=}}<% x %>", ["x"]],
    [{ title: "{{t}}", body: "{{b}}", dataTemplate: { k: ["{{d1}}", { z: "{{d2}} {{t}}" }], n: 1 } }, ["t", "b", "d1", "d2"]],
  ];
  for (const [template, expected] of table) {
    test(JSON.stringify(template), () => assert.deepEqual(referencedVariables(template), expected));
  }
});

describe("templateSyntaxError", () => {
  const table: Array<[string, RegExp | undefined]> = [
    ["fine {{x}} {{#s}}{{/s}}", undefined],
    ["", undefined],
    ["{{unclosed", /Unclosed tag/],
    ["{{#s}}open section", /Unclosed section "s"/],
    ["{{/s}}", /Unopened section/],
    ["{{#a}}{{/b}}", /Unclosed section "a"/],
    ["{{> partial}}", /partials/],
    ["{{}}", /empty tag/],
    ["{{=<% =}}", /Invalid tags/],
    ["{{#a}}".repeat(10) + "{{/a}}".repeat(10), undefined],
    ["{{#a}}".repeat(11) + "{{/a}}".repeat(11), /sections nest deeper than 10 levels/],
    ["{{^a}}".repeat(11) + "{{/a}}".repeat(11), /sections nest deeper than 10 levels/],
    // Deep enough that a recursive check (or a render) overflows the stack: refused, not thrown.
    ["{{#a}}".repeat(20_000) + "{{/a}}".repeat(20_000), /sections nest deeper than 10 levels/],
    ["{{#a}}{{/a}}".repeat(50) + "{{#b}}{{> p}}{{/b}}", /partials/],
  ];
  for (const [source, expected] of table) {
    test(JSON.stringify(source.length > 80 ? `${source.slice(0, 60)}… (${source.length} chars)` : source), () => {
      const problem = templateSyntaxError(source);
      if (expected) assert.match(problem ?? "", expected);
      else assert.equal(problem, undefined);
    });
  }
});

describe("parse cache", () => {
  test("holds at most PARSE_CACHE_MAX_CHARS characters of source, however many long templates pass through", () => {
    // Each template is parsed (and cached) while its request is validated, even a refused one.
    for (let i = 0; i < 400; i++) assert.equal(templateSyntaxError(`${i} ${"{{a}}".repeat(1_600)}`), undefined);
    assert.ok(parseCacheChars() <= PARSE_CACHE_MAX_CHARS, `${parseCacheChars()} characters cached`);
    assert.ok(parseCacheChars() > PARSE_CACHE_MAX_CHARS / 2, "recent templates stay cached");
    // A source longer than the whole budget is parsed but not kept.
    const before = parseCacheChars();
    assert.equal(templateSyntaxError("z".repeat(PARSE_CACHE_MAX_CHARS + 1)), undefined);
    assert.ok(parseCacheChars() <= before);
  });
});
