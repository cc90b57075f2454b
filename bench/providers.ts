/**
 * `npm run bench:providers [-- --messages 100000]`: the provider path alone — the same ApnsProvider
 * and FcmProvider the worker uses, against the same simulator process, with the campaign's
 * concurrency (16 batches in flight, chunks of 100 split by platform) — and no PostgreSQL, no
 * Temporal. It measures the ceiling that HTTP to the providers puts on campaign throughput on this
 * machine. `--apns` or `--fcm` sends to one provider only; `--connections`/`--pipelining` size the APNs
 * pool. The last line is machine-readable: `provider throughput: <N> messages/s`.
 */
import crypto from "node:crypto";
import { APNS_DEFAULT_CONNECTIONS, APNS_DEFAULT_PIPELINING } from "../src/providers/apns";
import { FCM_SIMULATOR_SOCKETS } from "../src/providers/fcm";
import { createProviderRegistry, type ApplicationPushCredentials, type PushMessage, type PushSubscriptionType } from "../src/providers";
import { cpuByRole, startSimulatorProcess } from "./support";
import { benchFlags } from "./flags";

async function main(): Promise<void> {
  const {
    counts: { messages: total, lanes, chunk, connections, pipelining, "fcm-sockets": fcmSockets },
    providerLatencyMs,
    switches,
  } = benchFlags(
    { messages: 100_000, lanes: 16, chunk: 100, connections: APNS_DEFAULT_CONNECTIONS, pipelining: APNS_DEFAULT_PIPELINING, "fcm-sockets": FCM_SIMULATOR_SOCKETS },
    ["apns", "fcm"],
  );
  if (switches.apns && switches.fcm) throw new Error("--apns and --fcm each choose one provider; give neither for both");
  const only = switches.apns ? "iOSPush" : switches.fcm ? "AndroidPush" : null;
  const platforms: PushSubscriptionType[] = only ? [only] : ["iOSPush", "AndroidPush"];
  const simulator = await startSimulatorProcess(providerLatencyMs);
  const registry = createProviderRegistry({ apnsEndpoint: simulator.target.apnsEndpoint, fcmEndpoint: simulator.target.fcmEndpoint, apns: { requestTimeoutMs: 15_000, connections, pipelining }, fcm: { maxSockets: fcmSockets } });
  const credentials: ApplicationPushCredentials = {
    applicationId: crypto.randomUUID(),
    apns: { ...simulator.target.apns, environment: "production" },
    fcm: { projectId: simulator.target.fcm.projectId, accessToken: simulator.target.fcm.accessToken },
  };
  const message = (i: number): PushMessage => ({ messageId: crypto.randomUUID(), token: `ok-${i.toString(16).padStart(32, "0")}`, title: "Bench", body: "campaign" });
  const sendChunk = async (from: number, to: number): Promise<number> => {
    let ok = 0;
    for (const type of platforms) {
      const messages: PushMessage[] = [];
      for (let i = from; i < to; i++) if (platforms.length === 1 || (i % 2 === 0) === (type === "iOSPush")) messages.push(message(i));
      const outcomes = await registry.providerFor(credentials, type).sendBatch(messages);
      ok += outcomes.filter((o) => o.kind === "success").length;
    }
    return ok;
  };
  await sendChunk(0, 200); // connect and sign once, outside the measurement
  const cpuBefore = cpuByRole(simulator.pid);
  const started = performance.now();
  let next = 0;
  let successful = 0;
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      while (next < total) {
        const from = next;
        next = Math.min(total, next + chunk);
        const sent = await sendChunk(from, next);
        successful += sent;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const cpuAfter = cpuByRole(simulator.pid);
  await registry.closeAll();
  await simulator.stop();
  if (successful !== total) throw new Error(`${total - successful} of ${total} sends did not succeed`);
  console.log(`messages:              ${total} (${only ?? "half APNs, half FCM"}), ${lanes} lanes of ${chunk}`);
  console.log(`CPU while it ran:      sender ${(cpuAfter["api+worker"] - cpuBefore["api+worker"]).toFixed(1)} s, simulator ${(cpuAfter.simulator - cpuBefore.simulator).toFixed(1)} s in ${seconds.toFixed(1)} s`);
  console.log(`provider throughput: ${Math.round(total / seconds)} messages/s`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
