import fs from "node:fs";
import path from "node:path";
import { test } from "node:test";
import assert from "node:assert/strict";
import { registry } from "../src/metrics/registry";

// Catches a renamed metric that the provisioned Grafana dashboard would silently show as "No data".
test("the Grafana dashboard is valid JSON and only queries metrics we define", () => {
  const file = path.resolve(__dirname, "../dashboards/automata-signal.json");
  const dashboard = JSON.parse(fs.readFileSync(file, "utf8")) as { schemaVersion: number; uid: string; panels: Array<{ type: string; targets?: Array<{ expr: string }> }> };
  assert.ok(dashboard.schemaVersion >= 36);
  assert.equal(dashboard.uid, "automata-signal");
  const defined = new Set(registry.getMetricsAsArray().map((m) => m.name));
  const exprs = dashboard.panels.flatMap((p) => p.targets ?? []).map((t) => t.expr);
  assert.ok(exprs.length > 10);
  for (const expr of exprs) {
    // Temporal SDK series come from its own exporter; every other automata_ series must be ours.
    for (const [name] of expr.matchAll(/automata_(?!temporal_)[a-z0-9_]+/g)) {
      const base = name.replace(/_(bucket|count|sum)$/, "");
      assert.ok(defined.has(base) || defined.has(name), `${name} (in ${expr}) is a registered metric`);
    }
  }
});
