import type { Logger } from "pino";
import { ProviderSimulator, type ProviderSimulatorOptions } from "../providers/simulator";
import type { SimulatorTarget } from "../messages/delivery";

/** A provider simulator running in this process, with what senders need to reach it. */
export interface RunningSimulator {
  simulator: ProviderSimulator;
  target: SimulatorTarget;
  stop(): Promise<void>;
}

/** Starts the APNs/FCM simulator on loopback (ports 0 = free ones) for apps without credentials. */
export async function startSimulator(logger: Logger, ports: { apnsPort?: number; fcmPort?: number } = {}, options: ProviderSimulatorOptions = {}): Promise<RunningSimulator> {
  const simulator = new ProviderSimulator(options);
  const info = await simulator.start(ports);
  logger.debug({ apns: info.apnsUrl, fcm: info.fcmUrl }, "provider simulator listening");
  return {
    simulator,
    target: {
      apnsEndpoint: simulator.apnsEndpoint(),
      fcmEndpoint: simulator.fcmEndpoint(),
      apns: simulator.apnsCredentials(),
      fcm: simulator.fcmCredentials(),
    },
    stop: () => simulator.stop(),
  };
}
