import { test } from "node:test";
import assert from "node:assert/strict";
import { toApiError } from "./app";

const coded = (code: string) => Object.assign(new Error("x"), { code });

test("toApiError: database races and outages answer 503 with Retry-After; unknown errors 500", () => {
  const cases: Array<[string, unknown, number, string | undefined]> = [
    ["deadlock between two requests", coded("40P01"), 503, "1"],
    ["lock wait given up (cancel behind a send)", coded("55P03"), 503, "1"],
    ["serialization failure", coded("40001"), 503, "1"],
    ["database down", coded("ECONNREFUSED"), 503, "5"],
    ["a bug", new TypeError("undefined is not a function"), 500, undefined],
  ];
  for (const [name, error, status, retryAfter] of cases) {
    const apiError = toApiError(error);
    assert.equal(apiError.status, status, name);
    assert.equal(apiError.headers["Retry-After"], retryAfter, name);
    assert.equal(apiError.toBody().status, "error", name);
  }
});
