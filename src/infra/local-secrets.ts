import fs from "node:fs";
import path from "node:path";
import crypto from "node:crypto";

/**
 * Returns the value of a dev secret stored in the data dir, generating it on first use so a second
 * `npm start` keeps the same admin token and can still decrypt the tokens it stored. The default is
 * hex: a base64url secret starts with "-" one time in 64, and `automata --token <it>` then reads
 * it as an option.
 */
export function readOrCreateLocalSecret(homeDir: string, name: string, generate: () => string = () => crypto.randomBytes(32).toString("hex")): string {
  const file = path.join(homeDir, name);
  fs.mkdirSync(homeDir, { recursive: true });
  if (!fs.existsSync(file)) fs.writeFileSync(file, generate(), { mode: 0o600 });
  return fs.readFileSync(file, "utf8").trim();
}
