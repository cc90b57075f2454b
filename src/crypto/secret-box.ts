import crypto from "node:crypto";

/** Sealed without associated data (everything written before values were bound to their row). */
const UNBOUND_VERSION = "v1";
/** Sealed with a context as GCM associated data: it opens only with the same context. */
const BOUND_VERSION = "v2";
/** GCM's nonce and tag sizes; Node would accept tags down to 4 bytes, which makes forgery guessable. */
const IV_BYTES = 12;
const TAG_BYTES = 16;

/**
 * Encrypts device tokens and provider credentials at rest (AES-256-GCM) and computes the keyed hash
 * (HMAC-SHA256) used to find and de-duplicate tokens without decrypting them. Both keys are derived
 * from one master key with HKDF so the encryption key is never used as a MAC key.
 */
export class SecretBox {
  private readonly encryptionKey: Buffer;
  private readonly macKey: Buffer;
  /** Names the master key without revealing it (hex), so processes can check they share one key. */
  readonly fingerprint: string;

  /** Whether {@link encrypt} binds values to their context (v2); it always reads both formats. */
  private readonly bind: boolean;

  /**
   * `bind: false` keeps writing unbound v1 values while processes of a release that cannot read v2
   * may still run (a rolling deploy, or a rollback to one); reading is the same either way.
   */
  constructor(masterKey: Buffer, options: { bind?: boolean } = {}) {
    this.bind = options.bind ?? true;
    if (masterKey.length !== 32) throw new Error("AUTOMATA_ENCRYPTION_KEY must be 32 bytes (base64 or hex)");
    this.encryptionKey = Buffer.from(crypto.hkdfSync("sha256", masterKey, Buffer.alloc(0), "automata-signal/aes-256-gcm", 32));
    this.macKey = Buffer.from(crypto.hkdfSync("sha256", masterKey, Buffer.alloc(0), "automata-signal/hmac-sha256", 32));
    this.fingerprint = Buffer.from(crypto.hkdfSync("sha256", masterKey, Buffer.alloc(0), "automata-signal/key-fingerprint", 16)).toString("hex");
  }

  /**
   * Encrypts UTF-8 text into `v2:<iv>:<tag>:<ciphertext>` (base64url parts) bound to `context`
   * (what the value is and whose: a ciphertext copied into another application's row does not
   * open there), or `v1:…` without one (or while binding is off).
   */
  encrypt(plaintext: string, context?: string): string {
    const bound = this.bind && context !== undefined;
    const iv = crypto.randomBytes(IV_BYTES);
    const cipher = crypto.createCipheriv("aes-256-gcm", this.encryptionKey, iv);
    if (bound) cipher.setAAD(Buffer.from(context, "utf8"));
    const ciphertext = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
    const tag = cipher.getAuthTag();
    const version = bound ? BOUND_VERSION : UNBOUND_VERSION;
    return [version, iv.toString("base64url"), tag.toString("base64url"), ciphertext.toString("base64url")].join(":");
  }

  /**
   * Decrypts a value produced by {@link encrypt}; throws if it was tampered with, the key differs,
   * or a bound value is opened with another context. An unbound (`v1`) value opens whatever the
   * context, so rows written before binding stay readable.
   */
  decrypt(sealed: string, context?: string): string {
    const [version, iv, tag, ciphertext] = sealed.split(":");
    if ((version !== UNBOUND_VERSION && version !== BOUND_VERSION) || !iv || !tag || ciphertext === undefined) throw new Error("unrecognised ciphertext format");
    if (version === BOUND_VERSION && context === undefined) throw new Error("a bound ciphertext needs its context to open");
    const ivBytes = Buffer.from(iv, "base64url");
    const tagBytes = Buffer.from(tag, "base64url");
    if (ivBytes.length !== IV_BYTES || tagBytes.length !== TAG_BYTES) throw new Error("unrecognised ciphertext format");
    const decipher = crypto.createDecipheriv("aes-256-gcm", this.encryptionKey, ivBytes, { authTagLength: TAG_BYTES });
    decipher.setAuthTag(tagBytes);
    if (version === BOUND_VERSION) decipher.setAAD(Buffer.from(context!, "utf8"));
    return Buffer.concat([decipher.update(Buffer.from(ciphertext, "base64url")), decipher.final()]).toString("utf8");
  }

  /**
   * A bound value for `plaintext` when `current` is an unbound (v1) one and this box binds, so a
   * row written before binding is upgraded whenever its plaintext passes by (a device registering
   * its token again); undefined when nothing needs rewriting.
   */
  resealUnbound(current: string | null, plaintext: string, context: string): string | undefined {
    if (!this.bind || current === null || !current.startsWith(`${UNBOUND_VERSION}:`)) return undefined;
    return this.encrypt(plaintext, context);
  }

  /** Keyed hash (hex) for equality lookups; the same input always gives the same hash. */
  hash(value: string): string {
    return crypto.createHmac("sha256", this.macKey).update(value, "utf8").digest("hex");
  }
}

/** Parses a 32-byte key given as 64 hex characters or base64/base64url. */
export function parseMasterKey(text: string): Buffer {
  const trimmed = text.trim();
  const key = /^[0-9a-fA-F]{64}$/.test(trimmed) ? Buffer.from(trimmed, "hex") : Buffer.from(trimmed, "base64");
  if (key.length !== 32) throw new Error("AUTOMATA_ENCRYPTION_KEY must decode to 32 bytes (64 hex chars or base64)");
  return key;
}
