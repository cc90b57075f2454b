/**
 * APNs adapter on apns2 (token auth, HTTP/2). apns2 owns JWT signing and the request format; we
 * own the connection pool (timeouts, simulator origin), the payload and error classification.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import crypto from "node:crypto";
import type * as Apns2 from "apns2" with { "resolution-mode": "require" };
import pLimit from "p-limit";
import { Client, Pool, type Dispatcher } from "undici";
import { classifyApnsError } from "./errors";
import { apnsCollapseId, buildApnsPayload } from "./payload";
import { NOT_SENT, type BatchOutcome, type FailureOutcome, type PoolUsage, type ProviderEndpoint, type PushMessage, type PushProvider, type SendBatchOptions, type SendOutcome, type ValidationIssue } from "./types";
import { outcomeFromIssues, validateApnsMessage } from "./validation";
import { credentialFingerprint } from "../crypto/fingerprint";

/** An application's APNs token-auth credential (.p8 key). */
export interface ApnsCredentials {
  teamId: string;
  keyId: string;
  /** PKCS#8 PEM contents of the .p8 file. */
  signingKey: string;
  /** App bundle id; every push goes to this `apns-topic`. */
  bundleId: string;
}

/** APNs environment: sandbox tokens come from development builds (subscription test_type). */
export type ApnsEnvironment = "production" | "sandbox";

/** Construction options for {@link ApnsProvider}. */
export interface ApnsProviderOptions extends ApnsCredentials {
  environment?: ApnsEnvironment;
  /** Send somewhere other than Apple (the simulator); overrides `environment`. */
  endpoint?: ProviderEndpoint;
  /** Most HTTP/2 connections in the pool (undici opens another while the others are busy or still connecting). */
  connections?: number;
  /**
   * Most streams in flight on one connection. Many streams on few connections cost far less CPU than
   * apns2's 32 connections of one stream each (measured: about half, client and server together). A fresh
   * connection still sends one stream at a time until the server's SETTINGS arrive — APNs allows one
   * stream until it has accepted a provider token, and undici alone would burst and get streams refused.
   */
  pipelining?: number;
  /** Per-request headers/body timeout. apns2 ignores its own `requestTimeout`, and undici's default is 300 s. */
  requestTimeoutMs?: number;
  /** Messages in flight per sendBatch step. */
  batchChunkSize?: number;
}

/** Default messages in flight per sendBatch step. */
export const APNS_BATCH_CHUNK_SIZE = 500;
/** Default most connections in the pool. */
export const APNS_DEFAULT_CONNECTIONS = 4;
/** Default most streams in flight per connection. */
export const APNS_DEFAULT_PIPELINING = 250;
/** Default per-request timeout. */
export const APNS_DEFAULT_TIMEOUT_MS = 30_000;

/**
 * How long one provider token (JWT) is reused. Apple accepts a token up to 60 minutes old and
 * answers 429 TooManyProviderTokenUpdates to a key re-signed more often than every 20 minutes.
 */
export const PROVIDER_TOKEN_REUSE_MS = 50 * 60_000;

/** The provider token of each signing key (team, key id, key), shared by every client that signs with it. */
const providerTokens = new Map<string, { value: string; signedAtMs: number }>();

/**
 * The shared provider token of a signing key, signed anew only when it is older than
 * {@link PROVIDER_TOKEN_REUSE_MS} (or the clock went back). Each client signing its own would
 * re-sign one key many times an hour: there is a provider per application, environment and lane,
 * and one idle for 15 minutes is closed and made again on the next send.
 */
export function sharedProviderToken(signingKeyId: string, sign: () => string, nowMs = Date.now()): string {
  const shared = providerTokens.get(signingKeyId);
  if (shared !== undefined && nowMs >= shared.signedAtMs && nowMs - shared.signedAtMs < PROVIDER_TOKEN_REUSE_MS) return shared.value;
  const value = sign();
  providerTokens.set(signingKeyId, { value, signedAtMs: nowMs });
  return value;
}

/**
 * Forgets a key's shared token that APNs called expired, unless it was signed after the refused
 * request started (another client already replaced it: forgetting that one would re-sign again).
 */
function forgetProviderToken(signingKeyId: string, requestStartedMs: number): void {
  const shared = providerTokens.get(signingKeyId);
  if (shared !== undefined && shared.signedAtMs <= requestStartedMs) providerTokens.delete(signingKeyId);
}

/** The apns2 internals the shared token replaces: its per-client token cache and signer. */
interface Apns2Signing {
  _token: unknown;
  _getSigningToken(): string;
}

// apns2's package.json says "type": "module", so TypeScript (module commonjs) refuses a value import even though its
// exports map ships a CommonJS build; require that build and take only the types from the ESM declarations.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { ApnsClient, Host, Notification, Priority } = require("apns2") as typeof Apns2;
type ApnsClient = Apns2.ApnsClient;
type Notification = Apns2.Notification;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** What the pool wrapper learns about one request that apns2 throws away (it returns only the Notification). */
interface Exchange {
  requestApnsId?: string;
  responseApnsId?: string;
  retryAfter?: string;
}

// Per-send context so the shared pool wrapper can hand response headers back to the right send() call.
const exchange = new AsyncLocalStorage<Exchange>();

function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

type RequestFn = (options: Dispatcher.RequestOptions) => Promise<Dispatcher.ResponseData>;

// apns2 discards response headers, but apns-id is the provider message id and Retry-After drives backoff.
function observeResponses(pool: Pool): void {
  const original = pool.request.bind(pool) as unknown as RequestFn;
  const observed: RequestFn = async (options) => {
    const context = exchange.getStore();
    const headers = options.headers;
    if (context?.requestApnsId !== undefined && headers !== null && typeof headers === "object" && !Array.isArray(headers)) {
      (headers as Record<string, string>)["apns-id"] = context.requestApnsId;
    }
    const response = await original(options);
    if (context !== undefined) {
      context.responseApnsId = firstHeader(response.headers["apns-id"]);
      context.retryAfter = firstHeader(response.headers["retry-after"]);
    }
    return response;
  };
  Object.defineProperty(pool, "request", { value: observed, configurable: true, writable: true });
}

/**
 * An undici Client whose every connection starts at one stream. undici stores the server's last
 * SETTINGS_MAX_CONCURRENT_STREAMS on the Client and passes it as the initial assumption to its next
 * connection, so after APNs raised it to 1,000 a reconnect would burst again and get streams refused.
 * undici reads the value only when it connects, so pinning it changes nothing else.
 */
function clientStartingAtOneStream(origin: URL, options: object): Dispatcher {
  const client = new Client(origin, options as Client.Options);
  const maxStreams = Object.getOwnPropertySymbols(client).find((symbol) => symbol.description === "max concurrent streams");
  if (maxStreams === undefined) throw new Error("undici changed: its Client no longer keeps 'max concurrent streams'; see clientStartingAtOneStream");
  Object.defineProperty(client, maxStreams, { get: () => 1, set: () => undefined, configurable: true });
  return client;
}

const CLOSED: FailureOutcome = { kind: "temporary", class: "network", reason: "provider_closed", code: "provider_closed" };

/** One APNs credential + environment; holds an HTTP/2 pool, so create once and reuse (see the registry). */
export class ApnsProvider implements PushProvider {
  readonly platform = "apns" as const;
  /** Origin requests go to (Apple or the simulator). */
  readonly origin: string;
  private readonly client: ApnsClient;
  private readonly chunkSize: number;
  private readonly keyProblem: string | undefined;
  private readonly retiredPool: Promise<void>;
  private readonly pool: Pool;
  /**
   * Requests handed to the pool at once: as many as its connections carry (connections × streams).
   * The rest wait here rather than in undici's queue, so a stopped batch can keep them unsent.
   */
  private readonly handOff: pLimit.Limit;
  /** Which shared provider token this client sends ({@link sharedProviderToken}). */
  private readonly signingKeyId: string;
  private closed = false;

  constructor(options: ApnsProviderOptions) {
    this.chunkSize = Math.max(1, options.batchChunkSize ?? APNS_BATCH_CHUNK_SIZE);
    this.keyProblem = signingKeyProblem(options.signingKey);
    const host = options.environment === "sandbox" ? Host.development : Host.production;
    this.origin = options.endpoint !== undefined ? new URL(options.endpoint.url).origin : `https://${host}:443`;
    this.client = new ApnsClient({
      team: options.teamId,
      keyId: options.keyId,
      signingKey: options.signingKey,
      defaultTopic: options.bundleId,
      host: options.endpoint !== undefined ? new URL(options.endpoint.url).hostname : host,
    });
    const timeout = options.requestTimeoutMs ?? APNS_DEFAULT_TIMEOUT_MS;
    this.handOff = pLimit((options.connections ?? APNS_DEFAULT_CONNECTIONS) * (options.pipelining ?? APNS_DEFAULT_PIPELINING));
    const pool = (this.pool = new Pool(this.origin, {
      connections: options.connections ?? APNS_DEFAULT_CONNECTIONS,
      pipelining: options.pipelining ?? APNS_DEFAULT_PIPELINING,
      allowH2: true,
      // Node's HTTP/2 client assumes this many streams until the server's SETTINGS say otherwise, and
      // holds any extra requests in its own queue meanwhile: 1 = never more than APNs allows at first.
      maxConcurrentStreams: 1,
      factory: clientStartingAtOneStream,
      headersTimeout: timeout,
      bodyTimeout: timeout,
      connectTimeout: Math.min(timeout, 10_000),
      ...(options.endpoint !== undefined ? { connect: { ca: options.endpoint.ca } } : {}),
    }));
    observeResponses(pool);
    // apns2 hard-codes port 443 and has no timeout/CA options, so its own pool (never used yet) is swapped for ours.
    this.retiredPool = this.client.client.close();
    Object.defineProperty(this.client, "client", { value: pool, configurable: true, enumerable: true, writable: false });
    // apns2 signs (in its own method, on its own clock) only when its cached token is gone: it is
    // cleared before each signature the shared cache asks for.
    const signingKeyId = credentialFingerprint({ teamId: options.teamId, keyId: options.keyId, signingKey: options.signingKey });
    this.signingKeyId = signingKeyId;
    const signing = this.client as unknown as Apns2Signing;
    const sign = signing._getSigningToken.bind(this.client);
    Object.defineProperty(this.client, "_getSigningToken", {
      value: () =>
        sharedProviderToken(signingKeyId, () => {
          signing._token = null;
          return sign();
        }),
    });
  }

  /** The HTTP/2 pool now (undici's counts; streams Node's client holds back are not visible). */
  poolUsage(): PoolUsage {
    const stats = this.pool.stats;
    return { connections: stats.connected, inFlight: stats.running, queued: stats.pending };
  }

  /** APNs rules: shared limits, reserved keys, 4 KB payload. */
  validate(message: PushMessage): ValidationIssue[] {
    return validateApnsMessage(message);
  }

  /** One attempt; never rejects. */
  async send(message: PushMessage): Promise<SendOutcome> {
    return this.handOff(() => this.sendNow(message));
  }

  private async sendNow(message: PushMessage): Promise<SendOutcome> {
    if (this.closed) return CLOSED;
    const context: Exchange = {};
    let startedMs = Date.now();
    try {
      if (this.keyProblem !== undefined) {
        return { kind: "permanent", reason: "provider_auth_failed", code: "InvalidSigningKey", detail: this.keyProblem };
      }
      const issues = validateApnsMessage(message);
      if (issues.length > 0) return outcomeFromIssues(issues);
      if (UUID.test(message.messageId)) context.requestApnsId = message.messageId.toLowerCase();
      const notification = toNotification(message);
      startedMs = Date.now();
      await exchange.run(context, () => this.client.send(notification));
      return { kind: "success", providerMessageId: context.responseApnsId ?? context.requestApnsId ?? message.messageId };
    } catch (error) {
      const outcome = classifyApnsError(error, context.retryAfter !== undefined ? { retryAfter: context.retryAfter } : {});
      // The next send, by any client with this key, signs a fresh one.
      if (outcome.code === "ExpiredProviderToken") forgetProviderToken(this.signingKeyId, startedMs);
      return outcome;
    }
  }

  /** Sends in concurrent chunks (HTTP/2 multiplexes them over the pool); never rejects, order preserved. */
  async sendBatch(messages: readonly PushMessage[], options: SendBatchOptions = {}): Promise<BatchOutcome[]> {
    const { stop } = options;
    const outcomes: BatchOutcome[] = [];
    for (let start = 0; start < messages.length; start += this.chunkSize) {
      const chunk = messages.slice(start, start + this.chunkSize);
      outcomes.push(...(await Promise.all(chunk.map((message) => this.handOff((): BatchOutcome | Promise<BatchOutcome> => (stop?.aborted ? NOT_SENT : this.sendNow(message)))))));
    }
    return outcomes;
  }

  /** Waits for in-flight requests, then closes the pool. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([this.client.close(), this.retiredPool]);
  }
}

/** Maps a PushMessage onto apns2's Notification; the body is exactly {@link buildApnsPayload}. */
export function toNotification(message: PushMessage): Notification {
  const { aps, ...custom } = buildApnsPayload(message);
  return new Notification(message.token, {
    aps,
    data: custom,
    collapseId: apnsCollapseId(message.messageId),
    ...(message.priority !== undefined ? { priority: message.priority === "high" ? Priority.immediate : Priority.throttled } : {}),
    ...(message.expiration !== undefined ? { expiration: apnsExpiration(message.expiration) } : {}),
  });
}

/**
 * `apns-expiration` for an absolute expiry. One already past (ttl_seconds 0 is stored as the time the
 * message was accepted; a retry may come after the deadline) becomes 0, APNs' documented "attempt
 * once, do not store": Apple only documents a non-zero date as "store and retry until then", and FCM
 * gets ttl 0 for the same message.
 */
export function apnsExpiration(expiration: number, nowSeconds: number = Math.floor(Date.now() / 1000)): number {
  return expiration <= nowSeconds ? 0 : expiration;
}

// A broken .p8 would otherwise fail inside fast-jwt on every send; detect it once, up front.
function signingKeyProblem(pem: string): string | undefined {
  try {
    const key = crypto.createPrivateKey(pem);
    if (key.asymmetricKeyType !== "ec") return `APNs signing key must be an EC (P-256) key, got ${key.asymmetricKeyType ?? "unknown"}`;
    return undefined;
  } catch (error) {
    return `APNs signing key is not a valid PEM private key: ${(error as Error).message}`;
  }
}
