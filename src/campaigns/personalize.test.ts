import { test } from "node:test";
import assert from "node:assert/strict";
import { ApiError } from "../http/errors";
import { referencesRecipient, renderForRecipient, validatePersonalizedTemplate, type RecipientFields } from "./personalize";

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

test("renderForRecipient fills tags, subscription and user fields next to the campaign variables", () => {
  const rendered = renderForRecipient(
    { title: "Hi {{tags.first_name}} (L{{tags.level}})", body: "{{promo}} for {{user.external_id}} in {{subscription.country}}/{{subscription.language}}", dataTemplate: { vip: "{{tags.vip}}" } },
    { promo: "20% off" },
    recipient,
  );
  assert.deepEqual(rendered, { title: "Hi Mina (L3)", body: "20% off for user-7 in KR/ko", data: { vip: "true" } });
});

test("renderForRecipient: non-printable tag values are left out; a missing required field throws the renderer's error", () => {
  const optional = renderForRecipient({ body: "[{{tags.nested}}][{{tags.list}}][{{tags.missing}}]" }, {}, recipient);
  assert.equal(optional.body, "[][][]");
  assert.throws(
    () => renderForRecipient({ body: "Hi {{tags.first_name}}", variables: [{ name: "tags.first_name", required: true }] }, {}, { ...recipient, tags: {} }),
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
