import fs from "node:fs";
import path from "node:path";
import crypto from "node:crypto";

/**
 * Returns the value of a dev secret stored in the data dir, generating it on first use so a second
 * `npm start` keeps the same admin token and can still decrypt the tokens it stored. The default is
 * hex: a base64url secret starts with "-" one time in 64, and `automata --token <it>` then reads
 * it as an option.
 *
 * A new secret is written whole before it gets its name (a temporary file, flushed, then linked):
 * the encryption key seals tokens PostgreSQL keeps durably, and a crash right after the first start
 * must not leave an empty or half-written key beside them. Two starts racing agree on one value.
 */
export function readOrCreateLocalSecret(homeDir: string, name: string, generate: () => string = () => crypto.randomBytes(32).toString("hex")): string {
  const file = path.join(homeDir, name);
  fs.mkdirSync(homeDir, { recursive: true });
  if (!fs.existsSync(file)) writeNewSecret(homeDir, file, generate());
  return fs.readFileSync(file, "utf8").trim();
}

/** Writes `value` to `file` unless another process got there first (then theirs stands). */
function writeNewSecret(dir: string, file: string, value: string): void {
  const staging = `${file}.${process.pid}.${crypto.randomBytes(4).toString("hex")}.tmp`;
  const fd = fs.openSync(staging, "wx", 0o600);
  try {
    fs.writeSync(fd, value);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  try {
    // link() fails on an existing name, unlike rename(): a racing start's secret is never replaced.
    fs.linkSync(staging, file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  } finally {
    fs.rmSync(staging, { force: true });
  }
  // The new name is durable only once its directory is.
  const dirFd = fs.openSync(dir, "r");
  try {
    fs.fsyncSync(dirFd);
  } finally {
    fs.closeSync(dirFd);
  }
}
