import { test } from "node:test";
import assert from "node:assert/strict";
import { DeviceInfo } from "./schemas";

// What SDKs read from the OS must register the device, not refuse it: the SDK repeats the same
// values on every launch, so a refusal means the device is never subscribed.
const CASES: Array<[input: Record<string, unknown>, stored: Record<string, unknown> | "refused"]> = [
  [{ device_language: "ko-KR", country_code: "kr" }, { device_language: "ko-KR", country_code: "KR" }],
  [{ device_language: "zh_CN_#Hans" }, { device_language: "zh-Hans-CN" }],
  [{ device_language: "sr_RS_#Latn" }, { device_language: "sr-Latn-RS" }],
  [{ device_language: "zh__#Hant" }, { device_language: "zh-Hant" }],
  [{ device_language: "", country_code: " " }, { device_language: null, country_code: null }],
  [{ country_code: "419" }, { country_code: null }],
  [{ device_language: null, country_code: null }, { device_language: null, country_code: null }],
  [{}, {}],
  [{ device_language: "b@d" }, "refused"],
  [{ country_code: "KOR" }, "refused"],
];

for (const [input, stored] of CASES) {
  test(`device_info ${JSON.stringify(input)} → ${stored === "refused" ? "refused" : JSON.stringify(stored)}`, () => {
    const parsed = DeviceInfo.safeParse(input);
    if (stored === "refused") assert.equal(parsed.success, false);
    else assert.deepEqual(parsed.success && parsed.data, stored);
  });
}
