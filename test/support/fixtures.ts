import crypto from "node:crypto";
import type { TestApp } from "./harness";

/** A device token the provider simulator answers by prefix (ok-, bad-, gone-, busy-, down-, flaky-, slow-). */
export function simulatorToken(prefix: "ok" | "bad" | "gone" | "busy" | "down" | "flaky" | "slow"): string {
  return `${prefix}-${crypto.randomBytes(16).toString("hex")}`;
}

/** Registers a push subscription through the API and returns its id. */
export async function createPushSubscription(
  app: TestApp,
  apiKey: string,
  options: { type?: "iOSPush" | "AndroidPush"; token?: string; externalId?: string; tags?: Record<string, string> } = {},
): Promise<{ id: string; token: string }> {
  const token = options.token ?? simulatorToken("ok");
  const res = await app.request("POST", "/subscriptions", {
    key: apiKey,
    body: { type: options.type ?? "iOSPush", token, ...(options.externalId ? { user_id: options.externalId } : {}), ...(options.tags ? { tags: options.tags } : {}) },
  });
  if (res.status !== 201 && res.status !== 200) throw new Error(`subscription create failed: ${res.status} ${JSON.stringify(res.body)}`);
  return { id: res.body.data.subscription_id ?? res.body.data.id, token };
}
