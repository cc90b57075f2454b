import { test } from "node:test";
import assert from "node:assert/strict";
import { refusalSpeaksForCredentials } from "../../activities/campaigns";

type Group = { platform: string; sandbox: boolean; accepted: number };

/** [provider group of one send round, its refusal's code, whether the campaign pauses]. */
const CASES: Array<[group: Group, code: string, pauses: boolean]> = [
  // Refusals of the credentials themselves pause, whatever else the group did.
  [{ platform: "apns", sandbox: false, accepted: 0 }, "InvalidProviderToken", true],
  [{ platform: "apns", sandbox: false, accepted: 3 }, "InvalidProviderToken", true],
  [{ platform: "apns", sandbox: true, accepted: 0 }, "InvalidProviderToken", true],
  [{ platform: "fcm", sandbox: false, accepted: 0 }, "messaging/mismatched-credential", true],
  [{ platform: "fcm", sandbox: false, accepted: 2 }, "messaging/authentication-error", true],
  // Device-scoped refusals: the same provider delivered others, so they were about those devices.
  [{ platform: "fcm", sandbox: false, accepted: 1 }, "messaging/third-party-auth-error", false],
  [{ platform: "apns", sandbox: false, accepted: 3 }, "BadEnvironmentKeyInToken", false],
  // ... nothing delivered: the application lacks that platform's key in Firebase, or uses a
  // sandbox-only key in production: the operator has something to fix.
  [{ platform: "fcm", sandbox: false, accepted: 0 }, "messaging/third-party-auth-error", true],
  [{ platform: "apns", sandbox: false, accepted: 0 }, "BadEnvironmentKeyInToken", true],
  // A production key refused by the sandbox: development builds fail, the audience goes on.
  [{ platform: "apns", sandbox: true, accepted: 0 }, "BadEnvironmentKeyInToken", false],
  // FCM has no sandbox; a test device's flag does not change its project's credentials.
  [{ platform: "fcm", sandbox: true, accepted: 0 }, "messaging/third-party-auth-error", true],
];

test("a credential refusal pauses a campaign unless it can be about some devices only and the rest of the send says so", () => {
  for (const [group, code, pauses] of CASES) assert.equal(refusalSpeaksForCredentials(group, code), pauses, `${JSON.stringify(group)} ${code}`);
});
