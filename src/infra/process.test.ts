import { test } from "node:test";
import assert from "node:assert/strict";
import { runStopSteps } from "./process";

test("runStopSteps: a failing step is reported and the steps after it still run", async () => {
  const ran: string[] = [];
  const failures: string[] = [];
  const allStopped = await runStopSteps(
    [
      { name: "api", stop: () => void ran.push("api") },
      {
        name: "worker",
        stop: async () => {
          ran.push("worker");
          throw new Error("worker crashed");
        },
      },
      { name: "temporal", stop: async () => void ran.push("temporal") },
    ],
    (name, error) => failures.push(`${name}: ${(error as Error).message}`),
  );
  assert.equal(allStopped, false);
  assert.deepEqual(ran, ["api", "worker", "temporal"]);
  assert.deepEqual(failures, ["worker: worker crashed"]);
  assert.equal(await runStopSteps([{ name: "x", stop: () => undefined }], () => assert.fail("no failure expected")), true);
});
