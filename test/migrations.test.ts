import crypto from "node:crypto";
import path from "node:path";
import { execFile } from "node:child_process";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { Knex } from "knex";
import { createDb, migrateLatest, migrationConfig } from "../src/db/knex";

// Operators roll a bad release back with the migrations' `down` (docs/deployment.md): every down
// must undo exactly what its up did, or the next `up` fails or leaves a different schema behind.
// This runs on a database of its own, so the other test files keep their schema meanwhile.

const ROOT = path.resolve(__dirname, "..");

let admin: Knex;
let db: Knex;
let databaseName: string;

before(async () => {
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error("run tests with `npm test` (it sets DATABASE_URL)");
  databaseName = `migrations_${crypto.randomBytes(6).toString("hex")}`;
  admin = createDb(url, 1);
  await admin.raw(`CREATE DATABASE ${databaseName}`);
  const own = new URL(url);
  own.pathname = `/${databaseName}`;
  db = createDb(own.toString(), 2);
});

after(async () => {
  await db?.destroy();
  await admin?.raw(`DROP DATABASE IF EXISTS ${databaseName} WITH (FORCE)`);
  await admin?.destroy();
});

/** Everything the migrations create in `public`, as sorted lines (columns, constraints, indexes, triggers, functions). */
async function schemaOf(knex: Knex): Promise<string[]> {
  const queries = [
    `SELECT format('column %s.%s %s %s %s', table_name, column_name, data_type, is_nullable, coalesce(column_default, '')) AS line
       FROM information_schema.columns WHERE table_schema = 'public' AND table_name NOT LIKE 'knex_migrations%'`,
    `SELECT format('constraint %s.%s %s', c.conrelid::regclass, c.conname, pg_get_constraintdef(c.oid)) AS line
       FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
      WHERE n.nspname = 'public' AND c.conrelid::regclass::text NOT LIKE 'knex_migrations%'`,
    `SELECT format('index %s', indexdef) AS line FROM pg_indexes WHERE schemaname = 'public' AND tablename NOT LIKE 'knex_migrations%'`,
    `SELECT format('trigger %s', pg_get_triggerdef(t.oid)) AS line
       FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND NOT t.tgisinternal`,
    `SELECT format('function %s %s', p.proname, md5(p.prosrc)) AS line
       FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'`,
  ];
  const lines: string[] = [];
  for (const sql of queries) lines.push(...((await knex.raw(sql)).rows as Array<{ line: string }>).map((r) => r.line));
  return lines.sort();
}

test("each migration's down restores the schema from before its up (columns, constraints, indexes, triggers, functions); all the way down and up again", async () => {
  const config = migrationConfig();
  const pending = ((await db.migrate.list(config)) as [unknown[], Array<{ file: string } | string>])[1];
  assert.ok(pending.length > 0, "a fresh database has every migration pending");
  // Up one at a time, remembering the schema each migration started from.
  const schemaBefore: string[][] = [];
  for (let i = 0; i < pending.length; i++) {
    schemaBefore.push(await schemaOf(db));
    await db.migrate.up(config);
  }
  const migrated = await schemaOf(db);
  assert.ok(migrated.some((line) => line.startsWith("column messages.status ")), "the schema snapshot sees the tables");
  assert.deepEqual(schemaBefore[0], [], "nothing of ours before the first migration");
  // Down one at a time: each must land on the schema its up started from.
  for (let i = pending.length - 1; i >= 0; i--) {
    const [, undone] = (await db.migrate.down(config)) as [number, string[]];
    assert.deepEqual(await schemaOf(db), schemaBefore[i], `down of ${undone.join(", ")}`);
  }
  await migrateLatest(db);
  assert.deepEqual(await schemaOf(db), migrated);
});

/** The newest migration that recounts rows (later ones add tables, indexes, nullable columns, and the recurring counts backfilled from the runs'). */
const PER_TYPE_COUNTS_MIGRATION = "20261202000300_campaign_counts_by_subscription_type";

test("with rows in the tables the latest migrations change, the latest down and up succeed and keep them", async () => {
  // A campaign row in the table the newest migrations change: down and up must keep it.
  const applicationId = crypto.randomUUID();
  const campaignId = crypto.randomUUID();
  await db("applications").insert({ id: applicationId, name: "migrations" });
  await db("message_campaigns").insert({
    id: campaignId,
    application_id: applicationId,
    name: "kept",
    status: "completed",
    content: JSON.stringify({ title: "t", body: "b", data: {} }),
    targeting_criteria: JSON.stringify({}),
  });
  // Its messages, whose counts the per-type counts migration keeps per subscription type.
  await db("messages").insert([
    { application_id: applicationId, campaign_id: campaignId, subscription_type: "iOSPush", status: "successful", sent_at: new Date() },
    { application_id: applicationId, campaign_id: campaignId, subscription_type: "iOSPush", status: "failed", sent_at: new Date() },
    { application_id: applicationId, campaign_id: campaignId, subscription_type: "AndroidPush", status: "pending" },
  ]);
  // A recurring campaign with two runs, whose totals the recurring counts migration backfills.
  const recurringId = crypto.randomUUID();
  const runIds = [crypto.randomUUID(), crypto.randomUUID()];
  const campaignRow = (id: string, extra: Record<string, unknown>) => ({
    id,
    application_id: applicationId,
    name: `recurring-${id}`,
    status: "running",
    content: JSON.stringify({ title: "t", body: "b", data: {} }),
    targeting_criteria: JSON.stringify({}),
    ...extra,
  });
  await db("message_campaigns").insert(campaignRow(recurringId, { schedule: JSON.stringify({ cron: "0 9 * * 1", timezone: "Asia/Seoul" }) }));
  await db("message_campaigns").insert(runIds.map((id, i) => campaignRow(id, { parent_campaign_id: recurringId, run_key: `run-${i}` })));
  for (const runId of runIds) {
    await db("messages").insert([
      { application_id: applicationId, campaign_id: runId, subscription_type: "iOSPush", status: "successful", sent_at: new Date() },
      { application_id: applicationId, campaign_id: runId, subscription_type: "AndroidPush", status: "received", sent_at: new Date() },
    ]);
  }
  /** A campaign's counts in `table`, per subscription type: the sums of `columns` over its shards. */
  const summedByType = async (table: string, id: string, columns: string[]) =>
    (await db(table)
      .where("campaign_id", id)
      .groupBy("subscription_type")
      .orderBy("subscription_type")
      .select("subscription_type", db.raw(columns.map((c) => `sum(${c})::int AS ${c}`).join(", ")))) as unknown[];
  const recurringTotals = () => summedByType("recurring_campaign_counts", recurringId, ["successful", "received"]);
  const recurringBefore = await recurringTotals();
  assert.deepEqual(recurringBefore, [
    { subscription_type: "AndroidPush", successful: 0, received: 2 },
    { subscription_type: "iOSPush", successful: 2, received: 0 },
  ]);
  const countsByType = () => summedByType("campaign_message_counts", campaignId, ["successful", "failed", "pending", "failed_after_sent"]);
  const countsBefore = await countsByType();
  assert.deepEqual(countsBefore, [
    { subscription_type: "AndroidPush", successful: 0, failed: 0, pending: 1, failed_after_sent: 0 },
    { subscription_type: "iOSPush", successful: 1, failed: 1, pending: 0, failed_after_sent: 1 },
  ]);
  const before = await schemaOf(db);
  // Down to and including the per-type counts migration (and the recurring counts after it).
  const undone: string[] = [];
  while (!undone.includes(PER_TYPE_COUNTS_MIGRATION)) {
    const [, names] = (await db.migrate.down(migrationConfig())) as [number, string[]];
    assert.ok(names.length > 0, `nothing left to undo before ${PER_TYPE_COUNTS_MIGRATION}`);
    undone.push(...names);
  }
  assert.equal(await db.schema.hasColumn("campaign_message_counts", "subscription_type"), false, "down dropped the per-type key");
  const folded = (await db("campaign_message_counts").where("campaign_id", campaignId).first(db.raw("sum(successful + failed + pending)::int AS total, sum(failed_after_sent)::int AS failed_after_sent"))) as { total: number; failed_after_sent: number };
  assert.deepEqual(folded, { total: 3, failed_after_sent: 1 }, "down folds the per-type counts into the campaign's");
  await migrateLatest(db);
  assert.deepEqual(await schemaOf(db), before);
  const row = (await db("message_campaigns").where("id", campaignId).first("name")) as { name: string } | undefined;
  assert.equal(row?.name, "kept");
  assert.deepEqual(await countsByType(), countsBefore, "up recounts them per type");
  assert.deepEqual(await recurringTotals(), recurringBefore, "up sums the runs' counts under their recurring campaign");
});

/** Runs the migrate CLI (`npm run migrate -- <args>`) against this test's own database. */
function migrateCli(...args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  const url = new URL(process.env.DATABASE_URL!);
  url.pathname = `/${databaseName}`;
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ["--import", "tsx", path.join(ROOT, "src/cli/migrate.ts"), ...args],
      { cwd: ROOT, encoding: "utf8", timeout: 60_000, env: { ...process.env, DATABASE_URL: url.toString(), LOG_LEVEL: "warn" } },
      (error, stdout, stderr) => resolve({ status: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

test("`migrate --down` rolls back the newest migration, `--status` shows it pending, `migrate` applies it again", async () => {
  const newest = (await migrationConfig().migrationSource!.getMigrations([])).map(String).at(-1)!;
  const status = await migrateCli("--status");
  assert.equal(status.status, 0, status.stderr);
  assert.match(status.stdout, new RegExp(`^applied  ${newest}$`, "m"));
  assert.doesNotMatch(status.stdout, /^pending/m);

  const down = await migrateCli("--down");
  assert.equal(down.status, 0, down.stderr);
  assert.equal(down.stdout.trim(), `rolled back ${newest}`);
  assert.match((await migrateCli("--status")).stdout, new RegExp(`^pending  ${newest}$`, "m"));

  const up = await migrateCli();
  assert.equal(up.status, 0, up.stderr);
  assert.equal(up.stdout.trim(), `applied 1 migration(s): ${newest}`);

  const refused = await migrateCli("--sideways");
  assert.equal(refused.status, 2);
  assert.match(refused.stderr, /usage: migrate/);
});

test("a migration a newer release applied is tolerated: `migrate` warns and applies nothing, `--status` lists it as unknown, `--down` refuses", async () => {
  // What the previous release's release command meets when a rollback redeploys it.
  const future = "20991231000000_from_a_newer_release";
  const [newest] = (await db("knex_migrations").max({ batch: "batch" })) as Array<{ batch: number }>;
  await db("knex_migrations").insert({ name: future, batch: newest!.batch + 1, migration_time: new Date() });
  try {
    const latest = await migrateCli();
    assert.equal(latest.status, 0, latest.stderr);
    assert.match(latest.stderr, new RegExp(`not known to this one .*${future}`));
    assert.equal(latest.stdout.trim(), "database is up to date");
    const status = await migrateCli("--status");
    assert.equal(status.status, 0, status.stderr);
    assert.match(status.stdout, new RegExp(`^unknown  ${future}$`, "m"));
    assert.match(status.stdout, /^applied {2}20261122000100_core$/m);
    const before = await schemaOf(db);
    const down = await migrateCli("--down");
    assert.equal(down.status, 1, "this release cannot undo a newer release's migration");
    assert.match(down.stderr, /refusing to roll back: newer migrations are applied/);
    assert.deepEqual(await schemaOf(db), before, "and it rolled back none of its own either");
  } finally {
    await db("knex_migrations").where("name", future).delete();
  }
});

test("a lock left by a migrate killed mid-run: `migrate` says how to clear it, `--unlock` clears it, then `migrate` runs", async () => {
  // What knex leaves when the process dies between taking its lock and freeing it.
  await db("knex_migrations_lock").update({ is_locked: 1 });
  try {
    const locked = await migrateCli();
    assert.equal(locked.status, 1);
    assert.match(locked.stderr, /npm run migrate -- --unlock/);
    const unlock = await migrateCli("--unlock");
    assert.equal(unlock.status, 0, unlock.stderr);
    assert.equal(((await db("knex_migrations_lock").first()) as { is_locked: number }).is_locked, 0);
    const latest = await migrateCli();
    assert.equal(latest.status, 0, latest.stderr);
    assert.equal(latest.stdout.trim(), "database is up to date");
  } finally {
    await db("knex_migrations_lock").update({ is_locked: 0 });
  }
});

test("an index a failed concurrent build left INVALID is built again when its migration runs again", async () => {
  // What a cancelled CREATE INDEX CONCURRENTLY leaves: the index exists, marked invalid (never used).
  const validity = async () => ((await db.raw(`SELECT indisvalid FROM pg_index WHERE indexrelid = 'messages_unsettled_single_idx'::regclass`)).rows as Array<{ indisvalid: boolean }>)[0]?.indisvalid;
  await db.raw(`UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'messages_unsettled_single_idx'::regclass`);
  assert.equal(await validity(), false);
  // The operator runs the migration again (here: its record removed, as if its run had failed).
  const migration = "20261202000500_messages_unsettled_single_index";
  await db("knex_migrations").where("name", migration).delete();
  const up = await migrateCli();
  assert.equal(up.status, 0, up.stderr);
  assert.equal(up.stdout.trim(), `applied 1 migration(s): ${migration}`);
  assert.equal(await validity(), true);
  const definition = ((await db.raw(`SELECT pg_get_indexdef('messages_unsettled_single_idx'::regclass) AS d`)).rows as Array<{ d: string }>)[0]!.d;
  assert.match(definition, /\(status, created_at, id\) WHERE/);
});
