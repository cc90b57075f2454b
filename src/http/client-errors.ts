import http from "node:http";
import type { Duplex } from "node:stream";
import { ApiError, type ErrorCode } from "./errors";

/**
 * Answers requests Node's HTTP parser refuses before Express sees them (oversize headers, broken
 * request lines, header timeouts) in the REF-001 envelope, so a client's error handling has one
 * format to read. Node's own answer is an empty body.
 */
export function answerClientErrorsInApiFormat(server: http.Server): void {
  server.on("clientError", (error: NodeJS.ErrnoException, socket: Duplex) => {
    // A reset connection has no one to answer, and a socket with a response under way cannot take a second one.
    if (error.code === "ECONNRESET" || !socket.writable || (socket as { _httpMessage?: unknown })._httpMessage) {
      socket.destroy();
      return;
    }
    socket.end(rawErrorResponse(clientErrorOf(error)));
  });
}

/** The REF-001 error for a parser or connection error, by Node's error code. */
function clientErrorOf(error: { code?: string }): ApiError {
  const byCode: Record<string, [ErrorCode, string]> = {
    HPE_HEADER_OVERFLOW: ["request_header_too_large", "The request's headers are too large"],
    HPE_CHUNK_EXTENSIONS_OVERFLOW: ["payload_too_large", "The request's chunk extensions are too large"],
    ERR_HTTP_REQUEST_TIMEOUT: ["request_timeout", "The request was not received in time"],
  };
  const [code, message] = byCode[error.code ?? ""] ?? ["invalid_request", "The request is not valid HTTP"];
  return new ApiError(code, message);
}

/** A complete HTTP/1.1 response carrying `error`, written straight to the socket. */
function rawErrorResponse(error: ApiError): string {
  const body = JSON.stringify(error.toBody());
  return [
    `HTTP/1.1 ${error.status} ${http.STATUS_CODES[error.status] ?? "Error"}`,
    "Content-Type: application/json; charset=utf-8",
    `Content-Length: ${Buffer.byteLength(body)}`,
    "Connection: close",
    "",
    body,
  ].join("\r\n");
}
