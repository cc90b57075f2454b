/**
 * FCM HTTP v1 adapter on firebase-admin. We always use the legacy HTTP/1.1 transport through our own
 * keep-alive agent: it is the only path that honours `httpAgent` (so the simulator tests exercise the
 * production code path), it reuses sockets across batches, and it is faster on loopback (see notes).
 */
import { AsyncLocalStorage } from "node:async_hooks";
import crypto from "node:crypto";
import type { ClientRequest, IncomingMessage } from "node:http";
import https from "node:https";
import type { Duplex } from "node:stream";
import tls from "node:tls";
import { cert, deleteApp, initializeApp, type App, type Credential } from "firebase-admin/app";
import { getMessaging, type Messaging, type TokenMessage } from "firebase-admin/messaging";
import { classifyFcmError, parseRetryAfter } from "./errors";
import { buildFcmMessage } from "./payload";
import { NOT_SENT, type BatchOutcome, type FailureOutcome, type PoolUsage, type ProviderEndpoint, type PushMessage, type PushProvider, type SendBatchOptions, type SendOutcome, type ValidationIssue } from "./types";
import { outcomeFromIssues, validateFcmMessage } from "./validation";

/** An application's FCM credential: a service account (production) or a static access token (simulator/tests). */
export interface FcmCredentials {
  projectId: string;
  /** Service-account key, as the parsed JSON object or its JSON text (never a file path). */
  serviceAccount?: Record<string, unknown> | string;
  /** Static OAuth access token; used instead of a service account. */
  accessToken?: string;
}

/** Construction options for {@link FcmProvider}. */
export interface FcmProviderOptions extends FcmCredentials {
  /** Send somewhere other than fcm.googleapis.com (the simulator). */
  endpoint?: ProviderEndpoint;
  /** Keep-alive sockets to FCM; unbounded sockets made 500 concurrent sends open thousands of TLS connections. */
  maxSockets?: number;
  /** Close a keep-alive socket idle this long (default FCM_IDLE_SOCKET_MS). */
  idleSocketMs?: number;
  /** Messages per sendEach call (FCM caps it at 500). */
  batchChunkSize?: number;
  /** Keep firebase-admin's internal retries (503/ECONNRESET, up to 4× with 0–4 s waits). Default false: the workflow owns retries. */
  sdkRetries?: boolean;
}

/** FCM's sendEach limit. */
export const FCM_MAX_BATCH = 500;
/** Default keep-alive sockets for the simulator: loopback needs few, and the notes measured 16 as fast. */
export const FCM_SIMULATOR_SOCKETS = 16;
/**
 * Default keep-alive sockets when talking to Google. HTTP/1.1 carries one request per socket, so
 * this bounds an application's Android sends per worker to sockets ÷ round trip: 64 allowed 640/s
 * at 100 ms, 512 allows 5,120/s (a campaign's window holds up to 16 batches × 100-message chunks).
 */
export const FCM_DEFAULT_SOCKETS = 512;
/**
 * Idle keep-alive sockets close after this long: a campaign's burst may open hundreds per
 * application, and without it they would stay open until Google closed them.
 */
export const FCM_IDLE_SOCKET_MS = 60_000;

const NO_RETRY = { maxRetries: 0, statusCodes: [] as number[], ioErrorCodes: [] as string[], backOffFactor: 0, maxDelayInMillis: 0 };

/** What the agent learns about one sendEach call's requests (firebase-admin errors do not carry response headers). */
interface Exchange {
  /** Largest Retry-After on a 429, in ms (applies to rate_limited outcomes). */
  rateLimitedMs?: number;
  /** Largest Retry-After on a 503, in ms (applies to provider_outage outcomes). */
  outageMs?: number;
  /** The call's requests not yet on a socket: nothing of them has been written, so a stop may drop them. */
  waiting: Set<ClientRequest>;
  /** Set once the call was stopped: requests it creates later (after a token refresh) are dropped too. */
  stopped?: Error;
}

/**
 * The error code a dropped request fails with. firebase-admin reports it as a network error whose
 * message ends "Error code: <code>", and sendEach gives that error to the dropped message alone.
 */
const NOT_SENT_CODE = "AUTOMATA_BATCH_STOPPED";

/** Whether firebase-admin's error for a message is a request this adapter dropped before it was written. */
function wasDropped(error: unknown): boolean {
  return error instanceof Error && error.message.includes(NOT_SENT_CODE);
}

const exchange = new AsyncLocalStorage<Exchange>();

/**
 * Keep-alive agent that (a) optionally pins every connection to the simulator and (b) notes Retry-After
 * on 429/503 responses for the call that issued them.
 */
class FcmAgent extends https.Agent {
  private readonly pin: { host: string; port: number; servername: string; ca: string } | undefined;

  constructor(maxSockets: number, idleSocketMs: number, endpoint?: ProviderEndpoint) {
    // `timeout` closes only free sockets (Node's agent destroys a free socket on its timeout; an
    // in-use one just emits it, and firebase-admin keeps its own request timeout).
    super({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets, timeout: idleSocketMs });
    if (endpoint !== undefined) {
      const url = new URL(endpoint.url);
      // The simulator listens on IPv4 loopback; resolving "localhost" could pick ::1.
      const host = url.hostname === "localhost" ? "127.0.0.1" : url.hostname;
      this.pin = { host, port: Number(url.port || 443), servername: url.hostname, ca: endpoint.ca };
    }
  }

  override createConnection(options: https.RequestOptions, callback?: (err: Error | null, stream: Duplex) => void): Duplex | null | undefined {
    if (this.pin === undefined) return super.createConnection(options, callback);
    const base = options as unknown as tls.ConnectionOptions;
    return tls.connect({ ...base, host: this.pin.host, port: this.pin.port, servername: this.pin.servername, ca: this.pin.ca });
  }

  /** Sockets carrying a request, idle keep-alive sockets, and requests waiting for a socket. */
  usage(): PoolUsage {
    const count = (lists: NodeJS.ReadOnlyDict<unknown[]>) => Object.values(lists).reduce((sum, list) => sum + (list?.length ?? 0), 0);
    const inFlight = count(this.sockets);
    return { connections: inFlight + count(this.freeSockets), inFlight, queued: count(this.requests) };
  }

  /**
   * Drops the call's requests that no socket has taken yet (waiting in this agent's queue, or for a
   * socket still connecting): they are destroyed before a byte of them is written. Node fails such a
   * request (with {@link NOT_SENT_CODE}) when a socket comes free for it, and hands the socket on
   * unused, so they all end once the requests under way have. Those are left to finish.
   */
  dropWaiting(context: Exchange): void {
    const stopped = Object.assign(new Error("the batch stopped before a connection took this request"), { code: NOT_SENT_CODE });
    context.stopped = stopped;
    for (const request of context.waiting) if (!request.socket) request.destroy(stopped);
    context.waiting.clear();
  }

  // Not in @types/node, but http.Agent#addRequest is how every request reaches an agent (agent-base relies on it too).
  addRequest(request: ClientRequest, options: unknown): void {
    const context = exchange.getStore();
    // Still handed to the agent: a destroyed request fails (and frees its socket unused) only once it is given one.
    if (context?.stopped !== undefined) request.destroy(context.stopped);
    else if (context !== undefined) {
      context.waiting.add(request);
      request.once("socket", () => context.waiting.delete(request));
      request.once("close", () => context.waiting.delete(request));
      request.once("response", (response: IncomingMessage) => {
        const field = response.statusCode === 429 ? "rateLimitedMs" : response.statusCode === 503 ? "outageMs" : undefined;
        // Delta-seconds or an HTTP-date, as for APNs.
        const waitMs = field === undefined ? undefined : parseRetryAfter(response.headers["retry-after"]);
        if (field === undefined || waitMs === undefined) return;
        // sendEach hides which response belonged to which message, so the batch shares the largest wait per status.
        context[field] = Math.max(context[field] ?? 0, waitMs);
      });
    }
    (https.Agent.prototype as unknown as { addRequest(this: https.Agent, r: ClientRequest, o: unknown): void }).addRequest.call(this, request, options);
  }
}

function staticCredential(accessToken: string): Credential {
  return { getAccessToken: async () => ({ access_token: accessToken, expires_in: 3600 }) };
}

function buildCredential(options: FcmCredentials): Credential {
  if (options.serviceAccount !== undefined) {
    const account = typeof options.serviceAccount === "string" ? (JSON.parse(options.serviceAccount) as Record<string, unknown>) : options.serviceAccount;
    return cert(account);
  }
  if (options.accessToken !== undefined) return staticCredential(options.accessToken);
  throw new Error("FCM credentials need a serviceAccount or an accessToken");
}

/** Turns off firebase-admin's internal HttpClient retries; it has no public switch, so this reaches into one private field and reports whether it could. */
export function disableSdkRetries(messaging: Messaging): boolean {
  const handler = (messaging as unknown as { messagingRequestHandler?: Record<string, { retry?: unknown } | undefined> }).messagingRequestHandler;
  let patched = false;
  for (const name of ["httpClient", "http2Client"]) {
    const client = handler?.[name];
    if (client !== undefined && "retry" in client) {
      client.retry = { ...NO_RETRY };
      patched = true;
    }
  }
  return patched;
}

function withRetryAfter(outcome: FailureOutcome, context: Exchange): FailureOutcome {
  if (outcome.kind !== "temporary") return outcome;
  const waitMs = outcome.class === "rate_limited" ? context.rateLimitedMs : outcome.class === "provider_outage" ? context.outageMs : undefined;
  return waitMs === undefined ? outcome : { ...outcome, retryAfterMs: waitMs };
}

const CLOSED: FailureOutcome = { kind: "temporary", class: "network", reason: "provider_closed", code: "provider_closed" };

let appCounter = 0;

/** One FCM project credential; owns a firebase-admin App and a keep-alive agent, so create once and reuse. */
export class FcmProvider implements PushProvider {
  readonly platform = "fcm" as const;
  /** Whether firebase-admin's own retries are off (false if its internals changed; then a 503 costs ~7 s before we see it). */
  readonly sdkRetriesDisabled: boolean;
  private readonly app: App | undefined;
  private readonly messaging: Messaging | undefined;
  private readonly agent: FcmAgent;
  private readonly chunkSize: number;
  private readonly configProblem: string | undefined;
  private closed = false;
  /** Sends under way; close waits for them (a rotated credential retires this provider mid-send). */
  private readonly inFlight = new Set<Promise<unknown>>();

  constructor(options: FcmProviderOptions) {
    this.chunkSize = Math.min(FCM_MAX_BATCH, Math.max(1, options.batchChunkSize ?? FCM_MAX_BATCH));
    const sockets = options.maxSockets ?? (options.endpoint !== undefined ? FCM_SIMULATOR_SOCKETS : FCM_DEFAULT_SOCKETS);
    this.agent = new FcmAgent(sockets, options.idleSocketMs ?? FCM_IDLE_SOCKET_MS, options.endpoint);
    let credential: Credential | undefined;
    let problem: string | undefined;
    try {
      credential = buildCredential(options);
    } catch (error) {
      // A malformed credential is a per-application configuration error; report it on every send instead of throwing from a factory.
      problem = `FCM credential is unusable: ${(error as Error).message}`;
    }
    this.configProblem = problem;
    if (credential !== undefined) {
      appCounter += 1;
      const name = `automata-fcm-${options.projectId}-${appCounter}-${crypto.randomBytes(4).toString("hex")}`;
      this.app = initializeApp({ credential, projectId: options.projectId, httpAgent: this.agent }, name);
      this.messaging = getMessaging(this.app);
      // The HTTP/2 path ignores httpAgent, opens a session per sendEach call, and sends a ":scheme: https:" Node servers reject.
      this.messaging.enableLegacyHttpTransport();
      this.sdkRetriesDisabled = options.sdkRetries === true ? false : disableSdkRetries(this.messaging);
    } else {
      this.sdkRetriesDisabled = false;
    }
  }

  /** The keep-alive pool now: one request per socket, so in flight = sockets in use. */
  poolUsage(): PoolUsage {
    return this.agent.usage();
  }

  /** FCM rules: shared limits, reserved data keys, 4 KB payload. */
  validate(message: PushMessage): ValidationIssue[] {
    return validateFcmMessage(message);
  }

  /** One attempt; never rejects. */
  async send(message: PushMessage): Promise<SendOutcome> {
    const [outcome] = await this.sendBatch([message]);
    return outcome === undefined || outcome.kind === "not_sent" ? CLOSED : outcome;
  }

  /** sendEach in chunks of ≤500; never rejects, order preserved. */
  async sendBatch(messages: readonly PushMessage[], options: SendBatchOptions = {}): Promise<BatchOutcome[]> {
    const outcomes: BatchOutcome[] = new Array<BatchOutcome>(messages.length);
    const sending = (async () => {
      for (let start = 0; start < messages.length; start += this.chunkSize) {
        await this.sendChunk(messages, start, Math.min(messages.length, start + this.chunkSize), outcomes, options.stop);
      }
    })();
    this.inFlight.add(sending);
    try {
      await sending;
    } finally {
      this.inFlight.delete(sending);
    }
    return outcomes;
  }

  /**
   * Refuses new sends, lets those under way finish (deleting the App or the sockets under them
   * failed requests FCM had already delivered, so they were sent again), then deletes the
   * firebase-admin App and closes the sockets.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.inFlight]);
    if (this.app !== undefined) await deleteApp(this.app);
    this.agent.destroy();
  }

  private async sendChunk(messages: readonly PushMessage[], start: number, end: number, outcomes: BatchOutcome[], stop: AbortSignal | undefined): Promise<void> {
    const indexes: number[] = [];
    const wire: TokenMessage[] = [];
    for (let i = start; i < end; i += 1) {
      const message = messages[i] as PushMessage;
      if (stop?.aborted) {
        outcomes[i] = NOT_SENT;
        continue;
      }
      const early = this.precheck(message);
      if (early !== undefined) {
        outcomes[i] = early;
        continue;
      }
      try {
        wire.push(buildFcmMessage(message));
        indexes.push(i);
      } catch (error) {
        outcomes[i] = classifyFcmError(error);
      }
    }
    if (wire.length === 0 || this.messaging === undefined) return;
    const messaging = this.messaging;
    const context: Exchange = { waiting: new Set() };
    const dropWaiting = () => this.agent.dropWaiting(context);
    stop?.addEventListener("abort", dropWaiting, { once: true });
    try {
      const batch = await exchange.run(context, () => messaging.sendEach(wire));
      batch.responses.forEach((response, k) => {
        const index = indexes[k] as number;
        if (response.success && response.messageId !== undefined) outcomes[index] = { kind: "success", providerMessageId: response.messageId };
        else if (wasDropped(response.error)) outcomes[index] = NOT_SENT;
        else outcomes[index] = withRetryAfter(classifyFcmError(response.error ?? new Error("FCM reported failure without an error")), context);
      });
    } catch (error) {
      // sendEach rejects only for whole-call problems (e.g. the App was deleted); every message shares that fate.
      const outcome = classifyFcmError(error);
      for (const index of indexes) outcomes[index] = outcome;
    } finally {
      stop?.removeEventListener("abort", dropWaiting);
    }
  }

  private precheck(message: PushMessage): SendOutcome | undefined {
    if (this.closed) return CLOSED;
    if (this.configProblem !== undefined) {
      return { kind: "permanent", reason: "provider_auth_failed", code: "invalid_credential", detail: this.configProblem };
    }
    const issues = validateFcmMessage(message);
    return issues.length > 0 ? outcomeFromIssues(issues) : undefined;
  }
}
