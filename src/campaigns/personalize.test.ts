import { test } from "node:test";
import assert from "node:assert/strict";
import { ApiError } from "../http/errors";
import { recipientRenderer, referencesRecipient, singleSendRenderer, validatePersonalizedTemplate, type RecipientFields } from "./personalize";

const recipient: RecipientFields = {
  subscription_id: "s-1",
  subscription_type: "iOSPush",
  tags: { first_name: "Mina", level: 3, vip: true, nested: { x: 1 }, list: ["a"] },
  language: "ko",
  country: "KR",
  timezone: "Asia/Seoul",
  external_id: "user-7",
};

test("referencesRecipient: tags, subscription and user roots need per-recipient rendering; campaign variables do not", () => {
  const cases: Array<[template: Parameters<typeof referencesRecipient>[0], expected: boolean]> = [
    [{ title: "Hi {{tags.first_name}}" }, true],
    [{ body: "{{#subscription.language}}lang{{/subscription.language}}" }, true],
    [{ dataTemplate: { link: "app://u/{{user.external_id}}" } }, true],
    [{ body: "hi", variables: [{ name: "tags.first_name", required: true }] }, true],
    [{ title: "Hi {{name}}", body: "{{promo.code}}" }, false],
    [{ title: "plain" }, false],
  ];
  for (const [template, expected] of cases) assert.equal(referencesRecipient(template), expected, JSON.stringify(template));
});

test("recipientRenderer fills tags, subscription and user fields next to the campaign variables", () => {
  const rendered = recipientRenderer(
    { title: "Hi {{tags.first_name}} (L{{tags.level}})", body: "{{promo}} for {{user.external_id}} in {{subscription.country}}/{{subscription.language}}", dataTemplate: { vip: "{{tags.vip}}" } },
    { promo: "20% off" },
  )(recipient);
  assert.deepEqual(rendered, { title: "Hi Mina (L3)", body: "20% off for user-7 in KR/ko", data: { vip: "true" } });
});

test("recipientRenderer: non-printable tag values are left out; a missing required field throws the renderer's error", () => {
  const optional = recipientRenderer({ body: "[{{tags.nested}}][{{tags.list}}][{{tags.missing}}]" }, {})(recipient);
  assert.equal(optional.body, "[][][]");
  assert.throws(
    () => recipientRenderer({ body: "Hi {{tags.first_name}}", variables: [{ name: "tags.first_name", required: true }] }, {})({ ...recipient, tags: {} }),
    (error: unknown) => error instanceof ApiError && error.code === "missing_required_variable",
  );
});

test("validatePersonalizedTemplate: reserved campaign variables and missing required campaign variables are refused at creation", () => {
  const template = { title: "Hi {{tags.first_name}}", body: "{{promo}}", variables: [{ name: "promo", required: true }, { name: "tags.first_name", required: true }] };
  assert.doesNotThrow(() => validatePersonalizedTemplate(template, { promo: "x" }));
  assert.throws(
    () => validatePersonalizedTemplate(template, {}),
    (error: unknown) => error instanceof ApiError && error.code === "missing_required_variable",
  );
  assert.throws(
    () => validatePersonalizedTemplate(template, { promo: "x", tags: { first_name: "forged" } }),
    (error: unknown) => error instanceof ApiError && error.code === "validation_error" && "variables.tags" in (error.details.fields as object),
  );
});

test("recipientRenderer: the campaign variables a template reads render as before, whatever else the campaign carries", () => {
  const unread = Object.fromEntries(Array.from({ length: 1_000 }, (_, i) => [`unused_${i}`, { text: "x".repeat(100) }]));
  const cases: Array<[name: string, template: Parameters<typeof recipientRenderer>[0], variables: Record<string, unknown>, body: string]> = [
    ["a plain root", { body: "{{promo}}" }, { promo: "20% off" }, "20% off"],
    ["a dotted name", { body: "{{promo.code}}" }, { promo: { code: "X1" } }, "X1"],
    ["a flat dotted key", { body: "{{promo.code}}" }, { "promo.code": "X2" }, "X2"],
    ["a name inside a section falls back to the root", { body: "{{#promo}}{{code}}/{{label}}{{/promo}}" }, { promo: { code: "X3" }, label: "root" }, "X3/root"],
    ["a declared variable's default", { body: "{{greeting}}", variables: [{ name: "greeting", required: false, default: "hello" }] }, {}, "hello"],
    ["a declared variable given as data only", { body: "-", dataTemplate: { c: "{{campaign.code}}" } }, { campaign: { code: "Z" } }, "-"],
  ];
  for (const [name, template, variables, body] of cases) {
    const rendered = recipientRenderer(template, { ...unread, ...variables })(recipient);
    assert.equal(rendered.body, body, name);
  }
  assert.deepEqual(recipientRenderer({ body: "-", dataTemplate: { c: "{{campaign.code}}" } }, { ...unread, campaign: { code: "Z" } })(recipient).data, { c: "Z" });
});

test("validatePersonalizedTemplate refuses at creation exactly what every recipient's render would refuse", () => {
  const cases: Array<[template: Parameters<typeof recipientRenderer>[0], refused: boolean]> = [
    [{ title: "Hi {{user}}" }, true],
    [{ title: "Hi {{tags}}" }, true],
    [{ body: "{{subscription}}" }, true],
    [{ body: "{{#tags}}{{.}}{{/tags}}" }, true],
    [{ dataTemplate: { u: "{{user}}" } }, true],
    [{ title: "Hi {{tags.first_name}}" }, false],
    [{ body: "{{#user}}{{external_id}}{{/user}}" }, false],
    [{ body: "{{user.external_id}} {{subscription.id}}" }, false],
  ];
  for (const [template, refused] of cases) {
    const atCreate = (() => {
      try {
        validatePersonalizedTemplate(template, {});
        return false;
      } catch (error) {
        assert.ok(error instanceof ApiError && error.code === "invalid_template_variables", JSON.stringify(template));
        return true;
      }
    })();
    const atSend = (() => {
      try {
        recipientRenderer(template, {})(recipient);
        return false;
      } catch (error) {
        assert.ok(error instanceof ApiError && error.code === "invalid_template_variables", JSON.stringify(template));
        return true;
      }
    })();
    assert.equal(atCreate, refused, `at create: ${JSON.stringify(template)}`);
    assert.equal(atSend, refused, `per recipient: ${JSON.stringify(template)}`);
  }
});

test("singleSendRenderer: the device's fields fill what the caller's variables leave out, in either form the caller uses", () => {
  const cases: Array<[name: string, template: Parameters<typeof singleSendRenderer>[0], variables: Record<string, unknown>, title: string]> = [
    ["the device's own tag", { title: "{{tags.first_name}}님" }, {}, "Mina님"],
    ["a nested caller value wins", { title: "{{tags.first_name}}님" }, { tags: { first_name: "Lee" } }, "Lee님"],
    ["a dotted caller value wins (it was refused as given twice)", { title: "{{tags.first_name}}님" }, { "tags.first_name": "Caller" }, "Caller님"],
    ["the caller's other fields and the device's merge", { title: "{{user.name}} {{user.external_id}} {{tags.level}}" }, { user: { name: "Bob" }, "tags.other": "x" }, "Bob user-7 3"],
    // A template printing a root as text, with a default: no recipient object replaces it.
    ["a root printed as text keeps its default", { title: "Hi {{user}}", variables: [{ name: "user", required: false, default: "there" }] }, {}, "Hi there"],
    ["a root the caller gave as text is the caller's", { title: "Hi {{user}} {{tags.first_name}}" }, { user: "Bob" }, "Hi Bob Mina"],
  ];
  for (const [name, template, variables, title] of cases) assert.equal(singleSendRenderer(template, variables)(recipient).title, title, name);
});
