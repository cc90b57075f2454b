import type http from "node:http";

/** A listening HTTP server: the port it got and a close that lets in-flight requests finish. */
export interface ListeningServer {
  port: number;
  close(): Promise<void>;
}

/** Starts `server` on host:port (0 = a free port) and resolves once it listens. */
export async function listen(server: http.Server, port: number, host: string): Promise<ListeningServer> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  return {
    port: typeof address === "object" && address ? address.port : port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}
