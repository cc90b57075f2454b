import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { assertPortsFree, ephemeralPortFloor, FREE_PORT_FLOOR, freePort, portInUse, PortInUseError } from "./ports";

test("a port something listens on is in use, and free again once it stops", async () => {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  assert.equal(await portInUse("127.0.0.1", port), true);
  // On Linux, binding all interfaces collides with a loopback listener too (how `npm start` binds the API).
  if (process.platform === "linux") assert.equal(await portInUse("0.0.0.0", port), true);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  assert.equal(await portInUse("127.0.0.1", port), false);
});

test("freePort hands out free ports below the OS's ephemeral range (which listen(0) cannot take meanwhile), never one twice", async () => {
  const low = ephemeralPortFloor();
  const ports = [];
  for (let i = 0; i < 50; i++) ports.push(await freePort());
  assert.equal(new Set(ports).size, ports.length);
  for (const port of ports) {
    // A host whose ephemeral range starts low leaves no room below it; freePort lets the OS pick there.
    if (low > FREE_PORT_FLOOR + 1_000) assert.ok(port >= FREE_PORT_FLOOR && port < low, `${port} below ${low}`);
    assert.equal(await portInUse("127.0.0.1", port), false);
  }
});

test("a second start is refused naming the port and the setting that moves it; free ports and port 0 pass", async () => {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  try {
    const free = await freePort();
    await assertPortsFree([
      { host: "127.0.0.1", port: free, setting: "PORT", what: "the API" },
      { host: "127.0.0.1", port: 0, setting: "X", what: "an OS-chosen port" },
    ]);
    await assert.rejects(
      assertPortsFree([
        { host: "127.0.0.1", port: free, setting: "PORT", what: "the API" },
        { host: "127.0.0.1", port, setting: "AUTOMATA_TEMPORAL_METRICS_ADDRESS", what: "the Temporal SDK's metrics" },
      ]),
      (error: unknown) => error instanceof PortInUseError && error.message.includes(`Port ${port} (the Temporal SDK's metrics)`) && error.message.includes("set AUTOMATA_TEMPORAL_METRICS_ADDRESS"),
    );
  } finally {
    server.close();
  }
});
