/**
 * A loopback stand-in for APNs and FCM: real TLS, real HTTP/2 (and HTTP/1.1 for firebase-admin's
 * legacy transport), real JWT/OAuth checks, so the real apns2 and firebase-admin clients run
 * unmodified against it. Behaviour is chosen by token prefix:
 *
 *   bad-      APNs 400 BadDeviceToken            FCM 400 INVALID_ARGUMENT (invalid registration token)
 *   gone-     APNs 410 Unregistered (+timestamp) FCM 404 UNREGISTERED
 *   busy-     APNs 429 TooManyRequests           FCM 429 QUOTA_EXCEEDED        (both with Retry-After)
 *   down-     503 on every attempt
 *   flaky-    503 on the first attempt for that token (per provider), 200 afterwards
 *   slow-     200 after `slowMs` (default 2 s)
 *   mismatch- APNs 400 DeviceTokenNotForTopic    FCM 403 SENDER_ID_MISMATCH
 *   reset-    the stream (APNs) / connection (FCM) is reset without an answer
 *   denied-   APNs 403 InvalidProviderToken      FCM 403 PERMISSION_DENIED     (as if the application's credentials were revoked)
 *   foreign-  APNs 403 BadEnvironmentKeyInToken  FCM 401 THIRD_PARTY_AUTH_ERROR  (the credentials are fine, not for this device:
 *             a key Apple limits to the other environment; an iOS token in a Firebase project without an APNs key)
 *   anything else: 200
 */
import crypto from "node:crypto";
import http2 from "node:http2";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { TLSSocket } from "node:tls";
import { generate } from "selfsigned";
import type { ProviderEndpoint } from "./types";

/** APNs token-auth credentials matching the simulator (the same shape a real .p8 setup has). */
export interface ApnsDevCredentials {
  teamId: string;
  keyId: string;
  /** PKCS#8 PEM of an EC P-256 key, as in a .p8 file. */
  signingKey: string;
  /** Bundle id, sent as `apns-topic`. */
  bundleId: string;
}

/** FCM credentials matching the simulator: a static OAuth access token instead of a service account. */
export interface FcmDevCredentials {
  projectId: string;
  accessToken: string;
}

/** Ports to listen on; 0 (the default) picks free ones. */
export interface SimulatorStartOptions {
  apnsPort?: number;
  fcmPort?: number;
}

/** What {@link ProviderSimulator.start} returns. */
export interface SimulatorInfo {
  apnsPort: number;
  fcmPort: number;
  /** PEM of the self-signed certificate both servers present; trust it as the CA. */
  ca: string;
  apnsUrl: string;
  fcmUrl: string;
}

/** Knobs for tests. */
export interface ProviderSimulatorOptions {
  /** Delay for `slow-` tokens. */
  slowMs?: number;
  /**
   * Delay before every request is handled, as the network round trip to a remote provider adds
   * (benchmarks: concurrency, not CPU, limits a sender then). Default 0.
   */
  latencyMs?: number;
  /** Retry-After seconds sent with 429s. */
  retryAfterSeconds?: number;
  /** Send that Retry-After as an HTTP-date (now + seconds) instead of delta-seconds; both forms are legal (RFC 9110 §10.2.3). */
  retryAfterAsDate?: boolean;
  teamId?: string;
  keyId?: string;
  bundleId?: string;
  projectId?: string;
}

/** One request as the simulator received it (the last one per token is kept). */
export interface RecordedPush {
  provider: "apns" | "fcm";
  token: string;
  headers: Record<string, string>;
  /** Parsed JSON body (APNs payload, or FCM `{message}` envelope). */
  body: unknown;
  receivedAt: number;
}

/** A fresh EC P-256 key pair in the formats APNs uses: PKCS#8 private (the .p8) and SPKI public. */
export function generateApnsSigningKey(): { privateKeyPem: string; publicKeyPem: string } {
  const { privateKey, publicKey } = crypto.generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  return {
    privateKeyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
  };
}

type Behaviour = "ok" | "bad" | "gone" | "busy" | "down" | "flaky-fail" | "slow" | "mismatch" | "reset" | "denied" | "foreign";

type AnyRequest = http2.Http2ServerRequest | IncomingMessage;
type AnyResponse = http2.Http2ServerResponse | ServerResponse;

const MAX_BODY_BYTES = 64 * 1024;
const APNS_MAX_PAYLOAD = 4096;
/** Concurrent streams the APNs simulator allows on a connection once a valid provider token was seen. */
export const APNS_AUTHENTICATED_STREAMS = 1000;
const FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError";

class BodyTooLargeError extends Error {}

function readBody(req: AnyRequest): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on("end", () => (size > MAX_BODY_BYTES ? reject(new BodyTooLargeError("body too large")) : resolve(Buffer.concat(chunks))));
    req.on("error", reject);
  });
}

function plainHeaders(req: AnyRequest): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(req.headers)) {
    if (key.startsWith(":") || value === undefined) continue;
    out[key.toLowerCase()] = Array.isArray(value) ? value.join(", ") : String(value);
  }
  return out;
}

function header(req: AnyRequest, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function base64urlJson(part: string | undefined): Record<string, unknown> | undefined {
  if (part === undefined) return undefined;
  try {
    const parsed: unknown = JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
    return typeof parsed === "object" && parsed !== null ? (parsed as Record<string, unknown>) : undefined;
  } catch {
    // Garbage in a JWT segment is an invalid token, which the caller reports as InvalidProviderToken.
    return undefined;
  }
}

/**
 * Tokens whose counts and last payload the simulator remembers. `npm start` runs it for days and a
 * campaign sends to millions: beyond this the least recently seen are forgotten, so its memory is
 * bounded (tests look at a few thousand at most).
 */
export const SIMULATOR_MEMORY_TOKENS = 100_000;

/**
 * Keeps `map` (oldest first) at most `max` entries: past it, forgets the oldest tenth at once.
 * Deleting one entry per insert made every lookup of the oldest key skip all the slots deleted
 * before it (V8 reclaims them only when the table grows): 50 µs per request once full, measured.
 */
export function forgetOldest(map: Map<string, unknown>, max: number): void {
  if (map.size <= max) return;
  let excess = map.size - Math.floor(max * 0.9);
  for (const key of map.keys()) {
    if (excess-- <= 0) break;
    map.delete(key);
  }
}

/** Loopback APNs + FCM servers with scripted failures and request accounting. */
export class ProviderSimulator {
  private readonly slowMs: number;
  private readonly latencyMs: number;
  private readonly retryAfterSeconds: number;
  private readonly retryAfterAsDate: boolean;
  private readonly apnsKey: { privateKeyPem: string; publicKeyPem: string };
  private readonly apnsPublicKey: crypto.KeyObject;
  private readonly apnsIds: { teamId: string; keyId: string; bundleId: string };
  private readonly fcm: FcmDevCredentials;
  private readonly counts = new Map<string, number>();
  private readonly flakySeen = new Set<string>();
  private readonly last = new Map<string, RecordedPush>();
  private readonly jwtCache = new Map<string, string | { iat: number }>();
  private readonly sockets = new Set<TLSSocket>();
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private readonly authenticatedSessions = new WeakSet<http2.Http2Session>();
  private apnsConnections = 0;
  private fcmConnections = 0;
  private readonly fcmOpenSockets = new Set<TLSSocket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private total = 0;
  private apnsServer: http2.Http2SecureServer | undefined;
  private fcmServer: http2.Http2SecureServer | undefined;
  private info: SimulatorInfo | undefined;
  private messageCounter = 0;

  constructor(options: ProviderSimulatorOptions = {}) {
    this.slowMs = options.slowMs ?? 2000;
    this.latencyMs = options.latencyMs ?? 0;
    this.retryAfterSeconds = options.retryAfterSeconds ?? 1;
    this.retryAfterAsDate = options.retryAfterAsDate ?? false;
    this.apnsKey = generateApnsSigningKey();
    this.apnsPublicKey = crypto.createPublicKey(this.apnsKey.publicKeyPem);
    this.apnsIds = {
      teamId: options.teamId ?? "SIMTEAM001",
      keyId: options.keyId ?? "SIMKEY0001",
      bundleId: options.bundleId ?? "dev.automata.simulator",
    };
    this.fcm = {
      projectId: options.projectId ?? "automata-simulator",
      accessToken: `sim-${crypto.randomBytes(16).toString("hex")}`,
    };
  }

  /** Generates the TLS certificate and starts both servers on 127.0.0.1. */
  async start(options: SimulatorStartOptions = {}): Promise<SimulatorInfo> {
    if (this.info !== undefined) return this.info;
    const pems = await generate([{ name: "commonName", value: "localhost" }], {
      keyType: "ec",
      algorithm: "sha256",
      notAfterDate: new Date(Date.now() + 7 * 24 * 3600 * 1000),
    });
    const tlsOptions = { key: pems.private, cert: pems.cert };
    // Like APNs with token auth: one stream per connection until a request carries a valid provider
    // token, then many (see handleApns). A client that bursts before that gets streams refused.
    this.apnsServer = http2.createSecureServer({ ...tlsOptions, allowHTTP1: false, settings: { maxConcurrentStreams: 1 } }, (req, res) => {
      this.handleAfterLatency(() => void this.handleApns(req, res));
    });
    // firebase-admin's legacy transport (the one that honours httpAgent) speaks HTTP/1.1.
    this.fcmServer = http2.createSecureServer({ ...tlsOptions, allowHTTP1: true }, (req: AnyRequest, res: AnyResponse) => {
      this.handleAfterLatency(() => void this.handleFcm(req, res));
    });
    this.apnsServer.on("secureConnection", () => {
      this.apnsConnections += 1;
    });
    this.fcmServer.on("secureConnection", (socket: TLSSocket) => {
      this.fcmConnections += 1;
      this.fcmOpenSockets.add(socket);
      socket.on("close", () => this.fcmOpenSockets.delete(socket));
    });
    for (const server of [this.apnsServer, this.fcmServer]) {
      server.on("secureConnection", (socket: TLSSocket) => {
        this.sockets.add(socket);
        socket.on("close", () => this.sockets.delete(socket));
      });
      server.on("session", (session: http2.ServerHttp2Session) => {
        this.sessions.add(session);
        session.on("close", () => this.sessions.delete(session));
      });
    }
    const apnsPort = await listen(this.apnsServer, options.apnsPort ?? 0);
    const fcmPort = await listen(this.fcmServer, options.fcmPort ?? 0);
    this.info = {
      apnsPort,
      fcmPort,
      ca: pems.cert,
      apnsUrl: `https://localhost:${apnsPort}`,
      fcmUrl: `https://localhost:${fcmPort}`,
    };
    return this.info;
  }

  /** Closes every open connection (both servers keep listening), as a provider's restart or a network drop would. */
  dropConnections(): void {
    for (const session of this.sessions) session.destroy();
    for (const socket of this.sockets) socket.destroy();
  }

  /** Stops both servers, dropping any open connections and pending slow answers. */
  async stop(): Promise<void> {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    for (const session of this.sessions) session.destroy();
    for (const socket of this.sockets) socket.destroy();
    await Promise.all([this.apnsServer, this.fcmServer].map((server) => (server === undefined ? undefined : close(server))));
    this.apnsServer = undefined;
    this.fcmServer = undefined;
    this.info = undefined;
  }

  /** APNs credentials the simulator accepts. */
  apnsCredentials(): ApnsDevCredentials {
    return { ...this.apnsIds, signingKey: this.apnsKey.privateKeyPem };
  }

  /** FCM credentials the simulator accepts. */
  fcmCredentials(): FcmDevCredentials {
    return { ...this.fcm };
  }

  /** Endpoint for ApnsProvider (`https://localhost:<port>` + CA). */
  apnsEndpoint(): ProviderEndpoint {
    const info = this.requireStarted();
    return { url: info.apnsUrl, ca: info.ca };
  }

  /** Endpoint for FcmProvider (`https://localhost:<port>` + CA). */
  fcmEndpoint(): ProviderEndpoint {
    const info = this.requireStarted();
    return { url: info.fcmUrl, ca: info.ca };
  }

  /** TLS connections the APNs server has accepted since it started. */
  apnsConnectionsAccepted(): number {
    return this.apnsConnections;
  }

  /** TLS connections the FCM server has accepted since it started. */
  fcmConnectionsAccepted(): number {
    return this.fcmConnections;
  }

  /** FCM connections open now. */
  fcmConnectionsOpen(): number {
    return this.fcmOpenSockets.size;
  }

  /** Requests received for a token (both servers, including rejected ones); 0 once forgotten. */
  requestsFor(token: string): number {
    return this.counts.get(token) ?? 0;
  }

  /** Requests received on either server's push route. */
  totalRequests(): number {
    return this.total;
  }

  /** The last request received for a token. */
  lastPayloadFor(token: string): RecordedPush | undefined {
    return this.last.get(token);
  }

  /** Forgets counters, recorded payloads and flaky state (servers keep running). */
  reset(): void {
    this.counts.clear();
    this.flakySeen.clear();
    this.last.clear();
    this.total = 0;
  }

  private requireStarted(): SimulatorInfo {
    if (this.info === undefined) throw new Error("ProviderSimulator is not started");
    return this.info;
  }

  private record(provider: "apns" | "fcm", token: string, req: AnyRequest, body: unknown): void {
    this.total += 1;
    this.counts.set(token, (this.counts.get(token) ?? 0) + 1);
    // Re-inserted so the Map's order is least recently seen first, which is what gets forgotten.
    this.last.delete(token);
    this.last.set(token, { provider, token, headers: plainHeaders(req), body, receivedAt: Date.now() });
    forgetOldest(this.counts, SIMULATOR_MEMORY_TOKENS);
    forgetOldest(this.last, SIMULATOR_MEMORY_TOKENS);
  }

  private behaviourFor(provider: "apns" | "fcm", token: string): Behaviour {
    const prefix = /^([a-z]+)-/.exec(token)?.[1];
    switch (prefix) {
      case "bad":
      case "gone":
      case "busy":
      case "down":
      case "slow":
      case "mismatch":
      case "reset":
      case "denied":
      case "foreign":
        return prefix;
      case "flaky":
        if (this.flakySeen.has(`${provider}:${token}`)) return "ok";
        this.flakySeen.add(`${provider}:${token}`);
        return "flaky-fail";
      default:
        return "ok";
    }
  }

  private later(fn: () => void, delayMs = this.slowMs): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      fn();
    }, delayMs);
    this.timers.add(timer);
  }

  /** Runs a request's handler now, or after the configured round-trip latency. */
  private handleAfterLatency(handle: () => void): void {
    if (this.latencyMs > 0) this.later(handle, this.latencyMs);
    else handle();
  }

  /** The Retry-After value of a 429, in the configured form. */
  private retryAfter(): string | number {
    return this.retryAfterAsDate ? new Date(Date.now() + this.retryAfterSeconds * 1000).toUTCString() : this.retryAfterSeconds;
  }

  /**
   * Verifies an APNs provider JWT; returns null when valid, else the APNs reason. The signature's
   * verdict is cached, the token's age is checked on every request: one accepted once is refused
   * once it is an hour old, as Apple does.
   */
  private verifyApnsJwt(authorization: string | undefined): string | null {
    if (authorization === undefined || !/^bearer /i.test(authorization)) return "MissingProviderToken";
    const jwt = authorization.slice(7).trim();
    let checked = this.jwtCache.get(jwt);
    if (checked === undefined) {
      checked = this.checkJwt(jwt);
      if (this.jwtCache.size > 1000) this.jwtCache.clear();
      this.jwtCache.set(jwt, checked);
    }
    if (typeof checked === "string") return checked;
    return Date.now() / 1000 - checked.iat < 3600 ? null : "ExpiredProviderToken";
  }

  /** A JWT's signature and claims: the APNs reason it is refused for, or its issue time. */
  private checkJwt(jwt: string): string | { iat: number } {
    const [h, p, s] = jwt.split(".");
    const head = base64urlJson(h);
    const claims = base64urlJson(p);
    if (head === undefined || claims === undefined || s === undefined) return "InvalidProviderToken";
    if (head.alg !== "ES256" || head.kid !== this.apnsIds.keyId || claims.iss !== this.apnsIds.teamId) return "InvalidProviderToken";
    const valid = crypto.verify(
      "sha256",
      Buffer.from(`${h}.${p}`),
      { key: this.apnsPublicKey, dsaEncoding: "ieee-p1363" },
      Buffer.from(s, "base64url"),
    );
    if (!valid) return "InvalidProviderToken";
    // A missing or non-numeric iat is as good as an expired one.
    return { iat: typeof claims.iat === "number" ? claims.iat : -Infinity };
  }

  private async handleApns(req: http2.Http2ServerRequest, res: http2.Http2ServerResponse): Promise<void> {
    const apnsId = header(req, "apns-id") ?? crypto.randomUUID();
    const reply = (status: number, reason?: string, extra: Record<string, string | number> = {}, body?: Record<string, unknown>) => {
      if (res.closed || res.destroyed) return;
      res.writeHead(status, { "apns-id": apnsId, "content-type": "application/json", ...extra });
      if (reason === undefined) res.end();
      else res.end(JSON.stringify({ reason, ...body }));
    };
    const match = /^\/3\/device\/([^/?]+)$/.exec(req.url);
    if (match === null) return reply(404, "BadPath");
    if (req.method !== "POST") return reply(405, "MethodNotAllowed");
    const token = decodeURIComponent(match[1] ?? "");

    let raw: Buffer;
    try {
      raw = await readBody(req);
    } catch (error) {
      this.record("apns", token, req, undefined);
      return reply(error instanceof BodyTooLargeError ? 413 : 400, error instanceof BodyTooLargeError ? "PayloadTooLarge" : "BadPayload");
    }
    let body: unknown;
    try {
      body = raw.length > 0 ? JSON.parse(raw.toString("utf8")) : undefined;
    } catch {
      // Not JSON: record the raw text so a test can see what was sent, and refuse it like APNs would.
      this.record("apns", token, req, raw.toString("utf8"));
      return reply(400, "BadPayload");
    }
    this.record("apns", token, req, body);

    const authProblem = this.verifyApnsJwt(header(req, "authorization"));
    if (authProblem !== null) return reply(403, authProblem);
    const session = req.stream.session;
    if (session !== undefined && !this.authenticatedSessions.has(session)) {
      this.authenticatedSessions.add(session);
      session.settings({ maxConcurrentStreams: APNS_AUTHENTICATED_STREAMS });
    }
    const topic = header(req, "apns-topic");
    if (topic === undefined) return reply(400, "MissingTopic");
    if (topic !== this.apnsIds.bundleId) return reply(400, "TopicDisallowed");
    if (body === undefined) return reply(400, "PayloadEmpty");
    if (raw.length > APNS_MAX_PAYLOAD) return reply(413, "PayloadTooLarge");
    const priority = header(req, "apns-priority");
    if (priority !== undefined && !["1", "5", "10"].includes(priority)) return reply(400, "BadPriority");
    const expiration = header(req, "apns-expiration");
    if (expiration !== undefined && !/^\d+$/.test(expiration)) return reply(400, "BadExpirationDate");
    const collapseId = header(req, "apns-collapse-id");
    if (collapseId !== undefined && Buffer.byteLength(collapseId) > 64) return reply(400, "BadCollapseId");
    if (token.length === 0) return reply(400, "MissingDeviceToken");

    switch (this.behaviourFor("apns", token)) {
      case "bad":
        return reply(400, "BadDeviceToken");
      case "gone":
        return reply(410, "Unregistered", {}, { timestamp: Date.now() - 86_400_000 });
      case "busy":
        return reply(429, "TooManyRequests", { "retry-after": this.retryAfter() });
      case "down":
      case "flaky-fail":
        return reply(503, "ServiceUnavailable");
      case "mismatch":
        return reply(400, "DeviceTokenNotForTopic");
      case "denied":
        return reply(403, "InvalidProviderToken");
      case "foreign":
        return reply(403, "BadEnvironmentKeyInToken");
      case "reset":
        req.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
        return;
      case "slow":
        return this.later(() => reply(200));
      case "ok":
        return reply(200);
    }
  }

  private async handleFcm(req: AnyRequest, res: AnyResponse): Promise<void> {
    const reply = (status: number, body: unknown, extra: Record<string, string | number> = {}) => {
      if (res.destroyed || res.writableEnded) return;
      res.writeHead(status, { "content-type": "application/json; charset=UTF-8", ...extra });
      res.end(JSON.stringify(body));
    };
    const fail = (code: number, status: string, message: string, errorCode?: string, extra: Record<string, string | number> = {}) =>
      reply(
        code,
        { error: { code, message, status, ...(errorCode === undefined ? {} : { details: [{ "@type": FCM_ERROR_TYPE, errorCode }] }) } },
        extra,
      );

    const match = /^\/v1\/projects\/([^/]+)\/messages:send$/.exec(req.url ?? "");
    if (match === null) return fail(404, "NOT_FOUND", "Not found");
    if (req.method !== "POST") return fail(405, "INVALID_ARGUMENT", "Method not allowed");
    let envelope: { message?: { token?: unknown; data?: unknown } } | undefined;
    try {
      const raw = await readBody(req);
      envelope = JSON.parse(raw.toString("utf8")) as typeof envelope;
    } catch (error) {
      return fail(400, "INVALID_ARGUMENT", `Invalid JSON payload received. ${(error as Error).message}`);
    }
    const token = typeof envelope?.message?.token === "string" ? envelope.message.token : "";
    this.record("fcm", token, req, envelope);

    if (header(req, "authorization") !== `Bearer ${this.fcm.accessToken}`) {
      return fail(401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token.");
    }
    if (match[1] !== this.fcm.projectId) {
      return fail(403, "PERMISSION_DENIED", `Permission 'cloudmessaging.messages.create' denied on resource '//cloudresourcemanager.googleapis.com/projects/${match[1]}'`);
    }
    if (token === "") return fail(400, "INVALID_ARGUMENT", "Recipient of the message is not set.", "INVALID_ARGUMENT");
    const data = envelope?.message?.data;
    if (data !== undefined) {
      const bad = Object.entries(data as Record<string, unknown>).find(([, value]) => typeof value !== "string");
      if (bad !== undefined) return fail(400, "INVALID_ARGUMENT", `Invalid value at 'message.data' (${bad[0]}): expected a string`, "INVALID_ARGUMENT");
    }

    const project = match[1];
    const ok = () => reply(200, { name: `projects/${project}/messages/${Date.now()}${(this.messageCounter += 1)}` });
    switch (this.behaviourFor("fcm", token)) {
      case "bad":
        return fail(400, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token", "INVALID_ARGUMENT");
      case "gone":
        return fail(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED");
      case "busy":
        return fail(429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Send requests'.", "QUOTA_EXCEEDED", {
          "retry-after": this.retryAfter(),
        });
      case "down":
      case "flaky-fail":
        return fail(503, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE");
      case "mismatch":
        return fail(403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH");
      case "denied":
        return fail(403, "PERMISSION_DENIED", `Permission 'cloudmessaging.messages.create' denied on resource '//cloudresourcemanager.googleapis.com/projects/${project}' (or it may not exist).`);
      case "foreign":
        return fail(401, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service", "THIRD_PARTY_AUTH_ERROR");
      case "reset":
        if ("stream" in req) req.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
        else req.socket.destroy();
        return;
      case "slow":
        return this.later(ok);
      case "ok":
        return ok();
    }
  }
}

function listen(server: http2.Http2SecureServer, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      server.off("error", reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function close(server: http2.Http2SecureServer): Promise<void> {
  return new Promise((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
}
