import type { Knex } from "knex";
import type { Client } from "@temporalio/client";
import type { Logger } from "pino";
import type { Config } from "./config";
import type { SecretBox } from "./crypto/secret-box";
import type { PushDelivery } from "./messages/delivery";

/** Everything request handlers and activities need, built once per process and passed down. */
export interface Deps {
  config: Config;
  db: Knex;
  temporal: Client;
  secrets: SecretBox;
  logger: Logger;
  /** Provider selection and connection pools for sends (activities). */
  push: PushDelivery;
  /**
   * Workers: a pool of its own for campaign activities, whose batches hold connections across
   * provider calls, so a running campaign cannot take every connection single messages need.
   * Absent (API processes): campaign code uses `db`.
   */
  campaignDb?: Knex;
}
