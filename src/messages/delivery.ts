import type { Knex } from "knex";
import type { Logger } from "pino";
import type { SecretBox } from "../crypto/secret-box";
import { openProviderCredentials, readSealedProviderCredentials } from "../applications/repository";
import {
  createProviderRegistry,
  ProviderNotConfiguredError,
  sumPoolUsage,
  type ProviderPoolUsage,
  type ApplicationPushCredentials,
  type ProviderEndpoint,
  type ProviderLane,
  type ProviderRegistry,
  type PushProvider,
  type PushSubscriptionType,
} from "../providers";
import type { ApnsDevCredentials, FcmDevCredentials } from "../providers/simulator";

/** Where the provider simulator listens and the credentials it accepts. */
export interface SimulatorTarget {
  apnsEndpoint: ProviderEndpoint;
  fcmEndpoint: ProviderEndpoint;
  apns: ApnsDevCredentials;
  fcm: FcmDevCredentials;
}

/** Per-request provider timeout (APNs headers/body; firebase-admin's own is the same 15 s). */
export const PROVIDER_REQUEST_TIMEOUT_MS = 15_000;

/**
 * Longest a campaign send chunk's provider calls take when each gets a connection at once: the
 * request timeout after up to 10 s of connecting (requests queued for a connection wait longer, up
 * to a few rounds when the window's batches fill the pool). A worker past its shutdown grace stops
 * after the chunk in flight, so the platform's SIGKILL must come at least this long after the grace.
 */
export const LONGEST_SEND_CHUNK_MS = PROVIDER_REQUEST_TIMEOUT_MS + 10_000;

/**
 * Longest a campaign chunk's pushes wait for a provider connection. The window's chunks share the
 * campaign lane's pool, so under a slow provider a chunk's queue could outlast the database's
 * idle-in-transaction limit (its rows stay locked meanwhile) and the session was ended after the
 * providers had accepted pushes, which the retry then sent again. Past this the pushes still
 * waiting stay pending for the next chunk; those under way finish.
 */
export const SEND_CHUNK_QUEUE_DEADLINE_MS = 2 * 60_000;

/**
 * Tries at recording a provider's answer (a single send's, a campaign chunk's) when PostgreSQL picks
 * the recording as a deadlock victim. Past this the transaction rolls back and the retry sends the
 * push again; each try can cost PostgreSQL's deadlock_timeout (1 s).
 */
export const RECORD_OUTCOME_ATTEMPTS = 5;

/** How long decrypted credentials are reused before re-reading them (rotation takes effect within this). */
const CREDENTIAL_CACHE_MS = 30_000;

/**
 * Picks the provider for one send: an application's own credentials go to Apple/Google; an
 * application without credentials for that platform goes to the provider simulator when one is
 * configured (`npm start`, tests, benchmarks), and is otherwise `provider_not_configured`.
 */
export class PushDelivery {
  private readonly real: ProviderRegistry;
  private readonly simulated: ProviderRegistry | undefined;
  /** Decrypted credentials per application, with the sealed text they came from (to tell a change). */
  private readonly credentialCache = new Map<string, { at: number; sealed: Promise<string | null>; credentials: Promise<ApplicationPushCredentials> }>();
  private credentialsSweptAt = 0;

  constructor(
    private readonly db: Knex,
    private readonly secrets: SecretBox,
    private readonly logger: Logger,
    private readonly simulator?: SimulatorTarget,
    fcmConnections?: number,
  ) {
    const fcm = fcmConnections === undefined ? {} : { maxSockets: fcmConnections };
    this.real = createProviderRegistry({ apns: { requestTimeoutMs: PROVIDER_REQUEST_TIMEOUT_MS }, fcm });
    this.simulated = simulator
      ? createProviderRegistry({ apnsEndpoint: simulator.apnsEndpoint, fcmEndpoint: simulator.fcmEndpoint, apns: { requestTimeoutMs: PROVIDER_REQUEST_TIMEOUT_MS }, fcm })
      : undefined;
  }

  /** True when pushes without credentials go to the simulator. */
  get simulatorEnabled(): boolean {
    return this.simulator !== undefined;
  }

  /**
   * The provider for an application and subscription type, on the lane's own connections (campaign
   * batches: `bulk`); throws ProviderNotConfiguredError.
   * Credentials are read through `reader`, which a sender inside a transaction must pass as its
   * transaction, so they are read on the connection it already holds. Reading them from the pool instead deadlocks once every pooled
   * connection is held by a send waiting for the same credentials (a worker runs more activities
   * than its pool has connections, and the cache expires every 30 s).
   */
  async providerFor(applicationId: string, subscriptionType: PushSubscriptionType, sandbox: boolean, reader: Knex, lane: ProviderLane = "single"): Promise<PushProvider> {
    const credentials = await this.credentialsOf(applicationId, reader);
    const platform = subscriptionType === "iOSPush" ? "apns" : "fcm";
    if (credentials[platform]) return this.real.providerFor(credentials, subscriptionType, { sandbox, lane });
    if (this.simulated && this.simulator) {
      const simulated: ApplicationPushCredentials = {
        applicationId,
        apns: { ...this.simulator.apns, environment: "production" },
        fcm: { projectId: this.simulator.fcm.projectId, accessToken: this.simulator.fcm.accessToken },
      };
      return this.simulated.providerFor(simulated, subscriptionType, { sandbox: false, lane });
    }
    throw new ProviderNotConfiguredError(applicationId, subscriptionType);
  }

  /** The pools of every provider this process has opened (Apple/Google and simulator), per platform. */
  poolUsage(): ProviderPoolUsage {
    return sumPoolUsage([this.real.poolUsage(), ...(this.simulated ? [this.simulated.poolUsage()] : [])]);
  }

  /** Closes every provider's connections. */
  async close(): Promise<void> {
    await Promise.all([this.real.closeAll(), this.simulated?.closeAll()]);
  }

  private credentialsOf(applicationId: string, reader: Knex): Promise<ApplicationPushCredentials> {
    const cached = this.credentialCache.get(applicationId);
    if (cached && Date.now() - cached.at < CREDENTIAL_CACHE_MS) return cached.credentials;
    const sealed = readSealedProviderCredentials(reader, applicationId);
    const credentials = sealed.then((text) => openProviderCredentials(this.secrets, applicationId, text)).then((stored) => ({
      applicationId,
      apns: stored.apns
        ? {
            teamId: stored.apns.team_id,
            keyId: stored.apns.key_id,
            signingKey: stored.apns.signing_key,
            bundleId: stored.apns.bundle_id,
            environment: stored.apns.production ? ("production" as const) : ("sandbox" as const),
          }
        : undefined,
      fcm: stored.fcm ? { projectId: String(stored.fcm.service_account.project_id), serviceAccount: stored.fcm.service_account } : undefined,
    }));
    credentials.catch((error: unknown) => {
      this.credentialCache.delete(applicationId);
      this.logger.warn({ err: error, application_id: applicationId }, "could not load provider credentials");
    });
    this.forgetExpiredCredentials();
    this.credentialCache.set(applicationId, { at: Date.now(), sealed, credentials });
    return credentials;
  }

  /**
   * Forgets an application's cached credentials when the stored ones changed since they were read
   * (one primary-key read through `reader`). A campaign chunk asks before it sends: an operator
   * who fixed credentials a provider refused and resumed the paused campaign at once had the
   * batches other workers ran fail on their copies of the old ones (up to 30 s old), and the
   * campaign paused itself again.
   */
  async forgetChangedCredentials(applicationId: string, reader: Knex): Promise<void> {
    const cached = this.credentialCache.get(applicationId);
    if (cached === undefined) return;
    const [stored, read] = await Promise.all([readSealedProviderCredentials(reader, applicationId), cached.sealed.catch(() => undefined)]);
    if (stored !== read && this.credentialCache.get(applicationId) === cached) this.credentialCache.delete(applicationId);
  }

  /**
   * Drops expired entries (at most once per cache period): an entry is only replaced when its
   * application sends again, so a deleted or deactivated application's decrypted credentials (a
   * revoked private key among them) stayed in memory for the life of the process.
   */
  private forgetExpiredCredentials(): void {
    const now = Date.now();
    if (now - this.credentialsSweptAt < CREDENTIAL_CACHE_MS) return;
    this.credentialsSweptAt = now;
    for (const [applicationId, entry] of this.credentialCache) if (now - entry.at >= CREDENTIAL_CACHE_MS) this.credentialCache.delete(applicationId);
  }

  /**
   * Forgets an application's cached credentials: a provider refused them, so the next send reads
   * them again (an operator fixing them and resuming is not held up to the cache period).
   */
  forgetCredentials(applicationId: string): void {
    this.credentialCache.delete(applicationId);
  }

  /** Size of the decrypted-credentials cache (tests). */
  get cachedCredentialCount(): number {
    return this.credentialCache.size;
  }
}
