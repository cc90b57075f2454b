import { test } from "node:test";
import assert from "node:assert/strict";
import { refusalSpeaksForCredentials } from "../../activities/campaigns";

/** [provider group of one send round, whether its credential refusal pauses the campaign]. */
const CASES: Array<[group: { platform: string; sandbox: boolean; accepted: number }, pauses: boolean]> = [
  [{ platform: "apns", sandbox: false, accepted: 0 }, true],
  [{ platform: "fcm", sandbox: false, accepted: 0 }, true],
  // The same provider delivered others: the refusal is about those devices, not the credentials.
  [{ platform: "apns", sandbox: false, accepted: 3 }, false],
  [{ platform: "fcm", sandbox: false, accepted: 1 }, false],
  // A key Apple limits to production is refused by the sandbox only: development builds fail, the audience goes on.
  [{ platform: "apns", sandbox: true, accepted: 0 }, false],
  // FCM has no sandbox; a test device's flag does not change its project's credentials.
  [{ platform: "fcm", sandbox: true, accepted: 0 }, true],
];

test("a credential refusal pauses a campaign only when it speaks for the application's production credentials", () => {
  for (const [group, pauses] of CASES) assert.equal(refusalSpeaksForCredentials(group), pauses, JSON.stringify(group));
});
