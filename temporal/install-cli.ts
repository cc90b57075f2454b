/**
 * Finds or builds (first run only) the Temporal CLI that `npm start` and `npm test` use, and prints
 * its path and version. `.ci/run` calls it so a fresh machine's build shows its progress on its own
 * line, with the same rules (TEMPORAL_CLI, PATH, cache, `go install`) as the launcher.
 */
import { createLogger } from "../src/logger";
import { resolveTemporalCli, temporalCliVersion } from "./launcher";

const logger = createLogger(process.env.AUTOMATA_LOG_LEVEL ?? "info", "temporal-cli");

resolveTemporalCli(logger).then(
  (cli) => {
    if (cli === undefined) {
      console.error("No Temporal CLI found and no Go to build one: install Go >= 1.25, or set TEMPORAL_CLI to a temporal binary");
      process.exit(1);
    }
    console.log(`${cli}: ${temporalCliVersion(cli)}`);
  },
  (error: unknown) => {
    console.error(`No usable Temporal CLI: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  },
);
