import fs from "node:fs";
import path from "node:path";
import { test } from "node:test";
import assert from "node:assert/strict";
import { registry } from "../src/metrics/registry";

interface Panel {
  type: string;
  targets?: Array<{ expr?: string }>;
  panels?: Panel[];
}

// Catches a renamed metric that the provisioned Grafana dashboard would silently show as "No data".
test("the Grafana dashboard is valid JSON and only queries metrics we define", () => {
  const file = path.resolve(__dirname, "../dashboards/automata-signal.json");
  const dashboard = JSON.parse(fs.readFileSync(file, "utf8")) as { schemaVersion: number; uid: string; panels: Panel[]; templating?: { list: Array<{ query?: string | { query?: string } }> } };
  assert.ok(dashboard.schemaVersion >= 36);
  assert.equal(dashboard.uid, "automata-signal");
  const defined = new Set(registry.getMetricsAsArray().map((m) => m.name));
  // Panels inside a collapsed row live in the row's own panels; template variables query too.
  const walk = (panels: Panel[]): string[] => panels.flatMap((p) => [...(p.targets ?? []).map((t) => t.expr ?? ""), ...walk(p.panels ?? [])]);
  const variables = (dashboard.templating?.list ?? []).map((v) => (typeof v.query === "string" ? v.query : v.query?.query ?? ""));
  const exprs = [...walk(dashboard.panels), ...variables].filter((e) => e.includes("automata_"));
  assert.ok(exprs.length > 10);
  for (const expr of exprs) {
    // Temporal SDK series come from its own exporter; every other automata_ series must be ours.
    for (const [name] of expr.matchAll(/automata_(?!temporal_)[a-z0-9_]+/g)) {
      const base = name.replace(/_(bucket|count|sum)$/, "");
      assert.ok(defined.has(base) || defined.has(name), `${name} (in ${expr}) is a registered metric`);
    }
  }
});
