import { test } from "node:test";
import assert from "node:assert/strict";
import pLimit from "p-limit";
import { ApiError } from "../http/errors";
import { takeTurn } from "./idempotency-turns";

test("takeTurn queues up to maxWaiting calls behind the running ones, then answers a retryable 503", async () => {
  const limit = pLimit(1);
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  const ran: number[] = [];
  const running = takeTurn(limit, 2, async () => {
    await held;
    ran.push(0);
  });
  await new Promise((resolve) => setImmediate(resolve)); // p-limit starts a call a microtask after it is made
  const waiting = [1, 2].map((n) => takeTurn(limit, 2, async () => void ran.push(n)));
  await new Promise((resolve) => setImmediate(resolve));

  await assert.rejects(
    takeTurn(limit, 2, async () => void ran.push(3)),
    (error: unknown) => error instanceof ApiError && error.status === 503 && error.code === "service_unavailable" && error.headers["Retry-After"] === "1",
  );

  release();
  await Promise.all([running, ...waiting]);
  assert.deepEqual(ran, [0, 1, 2], "the refused call never ran; the queued ones ran in order");
  await takeTurn(limit, 2, async () => void ran.push(4));
  assert.deepEqual(ran, [0, 1, 2, 4], "once the queue drains, calls are taken again");
});
