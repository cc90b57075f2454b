import fs from "node:fs";
import net from "node:net";

/** Lowest port picked by {@link freePort}, above the usual service ports. */
export const FREE_PORT_FLOOR = 20_000;
/** Ports this process handed out, so two picks never name the same port. */
const handedOut = new Set<number>();

/**
 * The first port of the range the OS picks from for `listen(0)` and outgoing connections (Linux:
 * /proc/sys/net/ipv4/ip_local_port_range, usually 32768).
 */
export function ephemeralPortFloor(): number {
  try {
    const low = Number(fs.readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);
    return Number.isInteger(low) ? low : 32_768;
  } catch {
    return 49_152; // not Linux: the IANA dynamic range
  }
}

/**
 * A TCP port free on loopback right now, for throwaway test and bench servers that bind it later.
 * Picked below the OS's ephemeral range: a port the OS handed to `listen(0)` and got back could be
 * handed to any other process's `listen(0)` or outgoing connection before ours binds it, while
 * the OS never hands out these on its own. Falls back to the OS's pick if none is found.
 */
export async function freePort(): Promise<number> {
  const ceiling = ephemeralPortFloor();
  // An ephemeral range tuned to start low leaves no room below it: let the OS pick, as before.
  for (let attempt = 0; attempt < 50 && ceiling > FREE_PORT_FLOOR + 1_000; attempt++) {
    const port = FREE_PORT_FLOOR + Math.floor(Math.random() * (ceiling - FREE_PORT_FLOOR));
    if (handedOut.has(port) || (await portInUse("127.0.0.1", port))) continue;
    handedOut.add(port);
    return port;
  }
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
