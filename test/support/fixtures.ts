import crypto from "node:crypto";
import type { TestApp } from "./harness";
import { newId } from "../../src/db/ids";
import { deviceTokenContext } from "../../src/subscriptions/device-token";

/** A device token the provider simulator answers by prefix (ok-, bad-, gone-, busy-, down-, flaky-, slow-, denied-, foreign-). */
export function simulatorToken(prefix: "ok" | "bad" | "gone" | "busy" | "down" | "flaky" | "slow" | "denied" | "foreign"): string {
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

/** Per-row options of {@link seedPushSubscriptions}; each is called with the row's index. */
export interface SeedOptions {
  prefix?: (i: number) => Parameters<typeof simulatorToken>[0];
  /** The whole device token (wins over `prefix`), for a test that looks its requests up in the simulator. */
  token?: (i: number) => string;
  tags?: (i: number) => Record<string, string>;
  timezone?: (i: number) => string | null;
  language?: (i: number) => string | null;
}

/**
 * Seeds push subscriptions straight into PostgreSQL in multi-row inserts (alternating iOS and
 * Android, subscribed, simulator tokens); returns their ids in order. For audiences too large to
 * register through the API in a test.
 */
export async function seedPushSubscriptions(app: Pick<TestApp, "deps">, applicationId: string, count: number, options: SeedOptions = {}): Promise<string[]> {
  const rows = Array.from({ length: count }, (_, i) => {
    const token = options.token?.(i) ?? simulatorToken(options.prefix?.(i) ?? "ok");
    return {
      id: newId(),
      application_id: applicationId,
      subscription_type: i % 2 === 0 ? "iOSPush" : "AndroidPush",
      token_ciphertext: app.deps.secrets.encrypt(token, deviceTokenContext(applicationId)),
      token_hash: app.deps.secrets.hash(token),
      subscription_status: 1,
      subscribed_at: new Date(),
      tags: JSON.stringify(options.tags?.(i) ?? {}),
      timezone: options.timezone?.(i) ?? null,
      language: options.language?.(i) ?? null,
    };
  });
  for (let i = 0; i < rows.length; i += 500) await app.deps.db("subscriptions").insert(rows.slice(i, i + 500));
  return rows.map((r) => r.id);
}
