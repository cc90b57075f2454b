/**
 * Provider registry (COMP-002 §4 AdapterFactory): one live provider per application credential and
 * lane, so HTTP/2 pools and keep-alive sockets are shared by every send of that application on
 * that lane (single messages, or campaign batches).
 */
import { ApnsProvider, type ApnsCredentials, type ApnsEnvironment, type ApnsProviderOptions } from "./apns";
import { FcmProvider, type FcmCredentials, type FcmProviderOptions } from "./fcm";
import type { PoolUsage, ProviderEndpoint, PushProvider, PushSubscriptionType } from "./types";
import { FAILURE_CODES } from "../messages/failure-codes";
import { credentialFingerprint } from "../crypto/fingerprint";

export { credentialFingerprint };

export * from "./types";
export { ApnsProvider, type ApnsCredentials, type ApnsEnvironment, type ApnsProviderOptions } from "./apns";
export { FcmProvider, type FcmCredentials, type FcmProviderOptions } from "./fcm";
export { classifyApnsError, classifyFcmError, SUBSCRIPTION_STATUS } from "./errors";
export { validatePushMessage, validateApnsMessage, validateFcmMessage, PUSH_LIMITS } from "./validation";

/** An application's decrypted push credentials, as stored (encrypted) on the application row. */
export interface ApplicationPushCredentials {
  applicationId: string;
  apns?: ApnsCredentials & { environment?: ApnsEnvironment };
  fcm?: FcmCredentials;
}

/**
 * Whether a subscription's pushes go to the APNs sandbox: development builds (1) do, whatever the
 * application's `production` flag; their tokens are BadDeviceToken in production, which would
 * unsubscribe every tester's device. Ad-hoc builds (2) do not: Apple signs them, like App Store,
 * TestFlight and Enterprise builds, with the production aps-environment, so their tokens exist
 * only in production (the seed's get_apns_config sent 2 to the sandbox too, where every ad-hoc
 * tester's push was BadDeviceToken). test_type 2 still marks a test device for targeting.
 */
export function usesApnsSandbox(testType: number | null | undefined): boolean {
  return testType === 1;
}

/** Where the providers are (the simulator, in development and tests) and how their clients are tuned. */
export interface ProviderRegistryOptions {
  apnsEndpoint?: ProviderEndpoint;
  fcmEndpoint?: ProviderEndpoint;
  /** Tuning passed to every ApnsProvider (connections, timeouts, chunk size). */
  apns?: Pick<ApnsProviderOptions, "connections" | "pipelining" | "requestTimeoutMs" | "batchChunkSize">;
  /** Tuning passed to every FcmProvider. */
  fcm?: Pick<FcmProviderOptions, "maxSockets" | "batchChunkSize" | "sdkRetries">;
  /** A provider not asked for this long is closed (its connections with it); default 15 minutes. */
  idleMs?: number;
  /** The clock (tests). */
  now?: () => number;
}

/** Default {@link ProviderRegistryOptions.idleMs}. */
export const PROVIDER_IDLE_MS = 15 * 60_000;

/** Pool usage per platform (see PoolUsage). */
export type ProviderPoolUsage = Record<PushProvider["platform"], PoolUsage>;

function addPoolUsage(total: PoolUsage, usage: PoolUsage): void {
  total.connections += usage.connections;
  total.inFlight += usage.inFlight;
  total.queued += usage.queued;
}

/** Adds pool usages per platform (none: all zeros). */
export function sumPoolUsage(usages: Iterable<ProviderPoolUsage>): ProviderPoolUsage {
  const total: ProviderPoolUsage = { apns: { connections: 0, inFlight: 0, queued: 0 }, fcm: { connections: 0, inFlight: 0, queued: 0 } };
  for (const usage of usages) {
    addPoolUsage(total.apns, usage.apns);
    addPoolUsage(total.fcm, usage.fcm);
  }
  return total;
}

/**
 * Which kind of traffic a provider carries. Campaign batches keep hundreds of requests in flight
 * and queue more behind them; a single message (a login code, a receipt) sent on the same pool
 * waited behind all of them. Each lane has its own pool, so a campaign never delays single sends.
 */
export type ProviderLane = "single" | "bulk";

/** Per-call selection beyond the subscription type. */
export interface ProviderSelection {
  /** APNs sandbox for development-build tokens (subscription test_type 1/2); overrides the credential's environment. */
  sandbox?: boolean;
  /** Traffic lane (default single); each lane has its own connections. */
  lane?: ProviderLane;
}

/** Thrown when an application has no credentials for the requested subscription type. */
export class ProviderNotConfiguredError extends Error {
  readonly code = FAILURE_CODES.providerNotConfigured;
  constructor(applicationId: string, subscriptionType: string) {
    super(`application ${applicationId} has no push credentials for ${subscriptionType}`);
    this.name = "ProviderNotConfiguredError";
  }
}

/** Caches providers; see {@link createProviderRegistry}. */
export interface ProviderRegistry {
  /** The cached provider for this credential, creating it on first use; throws ProviderNotConfiguredError when credentials are missing. */
  providerFor(credentials: ApplicationPushCredentials, subscriptionType: PushSubscriptionType, selection?: ProviderSelection): PushProvider;
  /** Number of live providers. */
  size(): number;
  /** The live providers' pools, summed per platform. */
  poolUsage(): ProviderPoolUsage;
  /** Closes every provider (process shutdown). */
  closeAll(): Promise<void>;
}

/** Creates a registry. Credential rotation replaces (and closes) the application's previous provider of that kind. */
export function createProviderRegistry(options: ProviderRegistryOptions = {}): ProviderRegistry {
  const byKey = new Map<string, PushProvider>();
  // slot = application + platform (+ APNs environment) + lane; lets a rotated credential retire the old pool.
  const keyBySlot = new Map<string, string>();
  const retiring = new Set<Promise<void>>();

  const retireErrors: unknown[] = [];
  const idleMs = options.idleMs ?? PROVIDER_IDLE_MS;
  const now = options.now ?? Date.now;
  const lastAsked = new Map<string, number>();
  let lastSweep = now();

  const retire = (provider: PushProvider) => {
    // Let in-flight sends finish on the old pool; closeAll waits for these and reports their failures.
    const closing: Promise<void> = provider
      .close()
      .then(undefined, (error: unknown) => {
        retireErrors.push(error);
      })
      .finally(() => retiring.delete(closing));
    retiring.add(closing);
  };

  /**
   * Closes the providers nobody asked for within `idleMs`: a worker serving many applications
   * otherwise kept every pool it ever opened (APNs HTTP/2 connections pinged every 10 minutes,
   * firebase Apps), also those of deleted applications and of credentials removed since. A provider
   * is asked for before every send, so an idle one has no send starting on it; close lets any
   * still in flight finish.
   */
  const sweepIdle = (at: number): void => {
    if (at - lastSweep < Math.min(idleMs, 60_000)) return;
    lastSweep = at;
    for (const [key, asked] of lastAsked) {
      if (at - asked < idleMs) continue;
      const provider = byKey.get(key);
      byKey.delete(key);
      lastAsked.delete(key);
      for (const [slot, slotKey] of keyBySlot) if (slotKey === key) keyBySlot.delete(slot);
      if (provider !== undefined) retire(provider);
    }
  };

  const remember = (slot: string, key: string, create: () => PushProvider): PushProvider => {
    const at = now();
    sweepIdle(at);
    lastAsked.set(key, at);
    const existing = byKey.get(key);
    if (existing !== undefined) return existing;
    const previousKey = keyBySlot.get(slot);
    if (previousKey !== undefined) {
      const previous = byKey.get(previousKey);
      byKey.delete(previousKey);
      lastAsked.delete(previousKey);
      if (previous !== undefined) retire(previous);
    }
    const provider = create();
    byKey.set(key, provider);
    keyBySlot.set(slot, key);
    return provider;
  };

  return {
    providerFor(credentials, subscriptionType, selection = {}) {
      if (subscriptionType === "iOSPush") {
        const apns = credentials.apns;
        if (apns === undefined) throw new ProviderNotConfiguredError(credentials.applicationId, subscriptionType);
        const environment: ApnsEnvironment = selection.sandbox === true ? "sandbox" : apns.environment ?? "production";
        const slot = `${credentials.applicationId}|apns|${environment}|${selection.lane ?? "single"}`;
        const key = `${slot}|${credentialFingerprint(apns)}`;
        return remember(slot, key, () => new ApnsProvider({ ...options.apns, ...apns, environment, ...(options.apnsEndpoint ? { endpoint: options.apnsEndpoint } : {}) }));
      }
      if (subscriptionType === "AndroidPush") {
        const fcm = credentials.fcm;
        if (fcm === undefined) throw new ProviderNotConfiguredError(credentials.applicationId, subscriptionType);
        const slot = `${credentials.applicationId}|fcm|${selection.lane ?? "single"}`;
        const key = `${slot}|${credentialFingerprint(fcm)}`;
        return remember(slot, key, () => new FcmProvider({ ...options.fcm, ...fcm, ...(options.fcmEndpoint ? { endpoint: options.fcmEndpoint } : {}) }));
      }
      throw new ProviderNotConfiguredError(credentials.applicationId, String(subscriptionType));
    },
    size() {
      return byKey.size;
    },
    poolUsage() {
      const total = sumPoolUsage([]);
      for (const provider of byKey.values()) addPoolUsage(total[provider.platform], provider.poolUsage());
      return total;
    },
    async closeAll() {
      const providers = [...byKey.values()];
      byKey.clear();
      keyBySlot.clear();
      lastAsked.clear();
      const results = await Promise.allSettled([...providers.map((p) => p.close()), ...retiring]);
      const errors = [...retireErrors.splice(0), ...results.flatMap((r) => (r.status === "rejected" ? [r.reason as unknown] : []))];
      if (errors.length > 0) throw new AggregateError(errors, "some push providers failed to close");
    },
  };
}
