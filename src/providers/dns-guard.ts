/**
 * Test-only seatbelt: makes DNS resolution of Apple/Google push hosts fail immediately, so a test
 * that forgets to point an adapter at the simulator fails fast instead of talking to real providers.
 */
import dns from "node:dns";

/** Hostnames the guard refuses to resolve. */
export const BLOCKED_HOST_PATTERNS: readonly RegExp[] = [/(^|\.)apple\.com\.?$/i, /(^|\.)googleapis\.com\.?$/i, /(^|\.)google\.com\.?$/i];

/** Whether `hostname` belongs to a real push provider. */
export function isBlockedHost(hostname: string): boolean {
  return BLOCKED_HOST_PATTERNS.some((pattern) => pattern.test(hostname));
}

/** The error a blocked lookup fails with; `syscall`/`code` mimic a DNS failure so clients treat it as one. */
export class DnsGuardError extends Error {
  readonly code = "EDNSGUARD";
  readonly syscall = "getaddrinfo";
  readonly hostname: string;

  constructor(hostname: string) {
    super(`dns-guard: refusing to resolve ${hostname} (tests must use the provider simulator)`);
    this.name = "DnsGuardError";
    this.hostname = hostname;
  }
}

/** Handle returned by {@link installDnsGuard}. */
export interface DnsGuard {
  /** Hostnames that were refused since installation, in order. */
  readonly blocked: readonly string[];
  /** Restores the original lookups once every installer has uninstalled. */
  uninstall(): void;
}

type LookupFn = (...args: unknown[]) => unknown;

let installs = 0;
let originalLookup: LookupFn | undefined;
let originalPromisesLookup: LookupFn | undefined;
const blockedLog: string[] = [];

/** Patches `dns.lookup` and `dns.promises.lookup` (which net, tls, http2 and undici all go through); nested installs are reference-counted. */
export function installDnsGuard(): DnsGuard {
  if (installs === 0) {
    originalLookup = dns.lookup as unknown as LookupFn;
    originalPromisesLookup = dns.promises.lookup as unknown as LookupFn;
    const callbackLookup = originalLookup;
    const promiseLookup = originalPromisesLookup;
    const guarded = function guardedLookup(this: unknown, hostname: unknown, ...rest: unknown[]): unknown {
      if (typeof hostname === "string" && isBlockedHost(hostname)) {
        blockedLog.push(hostname);
        const callback = rest[rest.length - 1];
        const error = new DnsGuardError(hostname);
        // Async like a real lookup: a synchronous throw inside net.connect would escape callers' error handling.
        if (typeof callback === "function") process.nextTick(() => (callback as (err: Error) => void)(error));
        else throw error;
        return undefined;
      }
      return callbackLookup.call(this, hostname, ...rest);
    };
    const guardedPromises = function guardedPromisesLookup(this: unknown, hostname: unknown, ...rest: unknown[]): unknown {
      if (typeof hostname === "string" && isBlockedHost(hostname)) {
        blockedLog.push(hostname);
        return Promise.reject(new DnsGuardError(hostname));
      }
      return promiseLookup.call(this, hostname, ...rest);
    };
    (dns as unknown as { lookup: LookupFn }).lookup = guarded;
    (dns.promises as unknown as { lookup: LookupFn }).lookup = guardedPromises;
  }
  installs += 1;
  const start = blockedLog.length;
  let active = true;
  return {
    get blocked() {
      return blockedLog.slice(start);
    },
    uninstall() {
      if (!active) return;
      active = false;
      installs -= 1;
      if (installs === 0 && originalLookup !== undefined && originalPromisesLookup !== undefined) {
        (dns as unknown as { lookup: LookupFn }).lookup = originalLookup;
        (dns.promises as unknown as { lookup: LookupFn }).lookup = originalPromisesLookup;
      }
    },
  };
}
