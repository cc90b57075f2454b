import net from "node:net";

/** A TCP port free on loopback right now (the OS picks it); for throwaway test and bench servers. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Whether something already listens on `host:port` (trying to bind it is the only reliable probe). */
export async function portInUse(host: string, port: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once("error", (error: NodeJS.ErrnoException) => (error.code === "EADDRINUSE" ? resolve(true) : reject(error)));
    server.listen(port, host, () => server.close(() => resolve(false)));
  });
}

/** A port `npm start` needs for itself is taken; the message says which setting moves it. */
export class PortInUseError extends Error {
  override name = "PortInUseError";
}

/**
 * Refuses to start when one of `ports` is taken, before anything else starts, naming the setting
 * that moves it: a second `npm start` would otherwise fail half-way with the Temporal SDK's "Address
 * already in use (os error 98)". PostgreSQL's and Temporal's ports are not listed on purpose: a
 * second start shares those servers.
 */
export async function assertPortsFree(ports: ReadonlyArray<{ host: string; port: number; setting: string; what: string }>): Promise<void> {
  for (const { host, port, setting, what } of ports) {
    if (port === 0 || !(await portInUse(host, port))) continue;
    throw new PortInUseError(
      `Port ${port} (${what}) is already in use: is Automata-Signal already running (npm start in another terminal)? Stop it first, or set ${setting} to use another port.`,
    );
  }
}
