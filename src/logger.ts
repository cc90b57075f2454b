import pino, { type DestinationStream, type Logger } from "pino";

/**
 * Paths that may carry secrets or personal data; pino replaces them before a line is written.
 * Device tokens, API keys, admin tokens, credentials and template variables never reach logs.
 */
export const REDACTED_PATHS = [
  "req.headers[\"x-api-key\"]",
  "req.headers.authorization",
  "req.headers.cookie",
  "*.token",
  "*.api_key",
  "*.apiKey",
  "*.password",
  "*.signingKey",
  "*.private_key",
  "*.credentials",
  "*.device_token",
  "*.plaintext",
];

/** Creates the process logger: JSON lines, secrets redacted; `destination` (default stdout) lets tests capture the stream. */
export function createLogger(level: string, name = "automata-signal", destination?: DestinationStream): Logger {
  const options = { name, level, redact: { paths: REDACTED_PATHS, censor: "[redacted]" } };
  return destination ? pino(options, destination) : pino(options);
}
