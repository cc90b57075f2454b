import fs from "node:fs";
import path from "node:path";
import { bundleWorkflowCode } from "@temporalio/worker";

/**
 * Prebuilds the workflow bundle for production images (`AUTOMATA_WORKFLOW_BUNDLE`), so workers do
 * not run webpack at start. Usage: `node dist/src/cli/bundle-workflows.js <output file>`.
 */
async function main(): Promise<void> {
  const output = path.resolve(process.argv[2] ?? "dist/workflow-bundle.js");
  const { code } = await bundleWorkflowCode({ workflowsPath: require.resolve("../../workflows") });
  fs.mkdirSync(path.dirname(output), { recursive: true });
  fs.writeFileSync(output, code);
  console.log(`workflow bundle written to ${output} (${(code.length / 1024).toFixed(0)} KiB)`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
