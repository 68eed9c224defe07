// The monitoring of k8s/monitoring, checked offline: the folder renders with `kubectl kustomize`
// (or kustomize) to the PrometheusRule and the Grafana dashboard's ConfigMap; `promtool check
// rules` accepts the rule groups taken out of the PrometheusRule and `promtool test rules` runs
// their unit tests (k8s/monitoring/tests/rules.test.yaml); every PromQL expression of the rules
// and of the dashboard uses only metrics and labels that the services export (read off their C
// sources, monitoring-checks.mjs). The last group breaks a rule, an expression and the dashboard
// on purpose and expects the checks to fail.
//
//   cd tests/deploy && npm ci && CARTSHARD_ROOT=$PWD/../.. node --test monitoring.test.mjs
//   (promtool is in Debian's prometheus package; PROMTOOL=/path/to/promtool picks another)

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { parse, stringify } from "yaml";

import { RECOMMENDED_LABELS, checkLabels, findRenderer, render, which } from "./k8s-checks.mjs";
import { checkAlerts, checkDashboard, checkExpr, dashboardExprs, metricCatalogue } from "./monitoring-checks.mjs";

const ROOT = process.env.CARTSHARD_ROOT || resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const DIR = join(ROOT, "k8s", "monitoring");
const PROMTOOL = process.env.PROMTOOL || which("promtool");
const NAMESPACE = "cartshard";

const rulesObject = () => parse(readFileSync(join(DIR, "prometheus-rules.yaml"), "utf8"));
const dashboard = () => JSON.parse(readFileSync(join(DIR, "grafana-dashboard.json"), "utf8"));
const rulesTests = () => parse(readFileSync(join(DIR, "tests", "rules.test.yaml"), "utf8"));

let tmp;

/** Runs promtool; returns {status, out}. */
function promtool(...args) {
  assert.ok(PROMTOOL, "promtool is not on PATH: `scripts/dev test` installs Debian's prometheus package for the deployment suites");
  const r = spawnSync(PROMTOOL, args, { encoding: "utf8", timeout: 120_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}`.trim() };
}

/** Writes the groups as a rule file, and the unit tests pointed at it; returns the tests' path. */
function writeRules(groups, tests, name) {
  const rules = join(tmp, `${name}.rules.yaml`);
  writeFileSync(rules, stringify({ groups }));
  const t = join(tmp, `${name}.test.yaml`);
  writeFileSync(t, stringify({ ...tests, rule_files: [rules] }));
  return { rules, tests: t };
}

const expectNone = (problems, what) => assert.ok(problems.length === 0, `${what}: ${problems.length} problem(s):\n  ${problems.join("\n  ")}`);
const expectSome = (problems, needles) => {
  for (const n of needles)
    assert.ok(problems.some((p) => p.includes(n)), `expected a problem mentioning "${n}", got:\n  ${problems.join("\n  ") || "(none)"}`);
};

before(() => {
  tmp = mkdtempSync(join(tmpdir(), "cartshard-monitoring-"));
});

after(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe("k8s/monitoring renders", () => {
  it("to the PrometheusRule and the dashboard ConfigMap that Grafana's sidecar picks up, in the cartshard namespace", (t) => {
    const renderer = findRenderer();
    assert.ok(renderer, "neither kubectl nor kustomize is on PATH: `scripts/dev test` installs Debian's kubernetes-client");
    const objs = render(renderer, DIR);
    assert.deepEqual(objs.map((o) => `${o.kind}/${o.metadata.name}`).sort(), ["ConfigMap/cartshard-grafana-dashboard", "PrometheusRule/cartshard-alerts"]);
    for (const o of objs) assert.equal(o.metadata.namespace, NAMESPACE, `${o.kind}/${o.metadata.name}: namespace`);
    expectNone(checkLabels(objs), "labels");
    const cm = objs.find((o) => o.kind === "ConfigMap");
    assert.equal(cm.metadata.labels.grafana_dashboard, "1", "the sidecar's label, as a string");
    assert.deepEqual(JSON.parse(cm.data["grafana-dashboard.json"]), dashboard(), "the ConfigMap carries the dashboard as it is");
    const rule = objs.find((o) => o.kind === "PrometheusRule");
    assert.equal(rule.apiVersion, "monitoring.coreos.com/v1");
    assert.deepEqual(rule.spec, rulesObject().spec);
    t.diagnostic(`${renderer.label}; labels checked: ${RECOMMENDED_LABELS.join(", ")}`);
  });
});

describe("the alert rules", () => {
  it("pass `promtool check rules`", (t) => {
    const { rules } = writeRules(rulesObject().spec.groups, rulesTests(), "as-is");
    const r = promtool("check", "rules", rules);
    assert.equal(r.status, 0, r.out);
    t.diagnostic(r.out.split("\n").pop());
  });

  it("each have for:, a severity, a summary and a description", () => {
    const groups = rulesObject().spec.groups;
    expectNone(checkAlerts(groups), "alerts");
    const names = groups.flatMap((g) => g.rules.map((r) => r.alert));
    for (const a of [
      "CartshardTargetDown",
      "CartshardGateway5xxRate",
      "CartshardWorkerLag",
      "CartshardPartitionsNotOwned",
      "CartshardPartitionStalls",
      "CartshardEventsDeadLettered",
      "CartshardStatsConsumerLag",
      "CartshardStatsFlushStale",
    ])
      assert.ok(names.includes(a), `alert ${a} is missing`);
  });

  it("use only metrics and labels the services export", (t) => {
    const cat = metricCatalogue(ROOT);
    const problems = [];
    const used = new Set();
    for (const g of rulesObject().spec.groups)
      for (const r of g.rules) {
        problems.push(...checkExpr(r.expr, cat, `alert ${r.alert}`));
        for (const m of Object.keys(cat)) if (new RegExp(`\\b${m}\\b`).test(r.expr)) used.add(m);
      }
    expectNone(problems, "rule expressions");
    t.diagnostic(`${Object.keys(cat).length} metric names known; the rules use ${[...used].sort().join(", ")}`);
  });

  it("pass their unit tests (`promtool test rules`: lag, 5xx, partitions not owned, dead letters, cart-stats, targets down)", (t) => {
    const { tests } = writeRules(rulesObject().spec.groups, rulesTests(), "as-is");
    const r = promtool("test", "rules", tests);
    assert.equal(r.status, 0, r.out);
    t.diagnostic(`${rulesTests().tests.length} test groups: ${r.out.split("\n").pop().trim()}`);
  });
});

describe("the Grafana dashboard", () => {
  it("is well formed: unique panel ids, Prometheus targets, only its own variables", () => {
    expectNone(checkDashboard(dashboard()), "dashboard");
  });

  it("covers request rate, latency and 5xx per route, worker lag and batches, the DLQ, and cart-stats", () => {
    const exprs = dashboardExprs(dashboard()).map((e) => e.expr).join("\n");
    for (const m of [
      "cartshard_http_requests_total",
      "cartshard_http_request_duration_seconds_bucket",
      'status=~"5.."',
      "cartshard_partition_lag",
      "cartshard_batch_duration_seconds_bucket",
      "cartshard_events_dead_lettered_total",
      "cartshard_stats_figure",
      "cartshard_stats_consumer_pending",
      "cartshard_stats_flush_age_seconds",
      "cartshard_stats_changes_total",
    ])
      assert.ok(exprs.includes(m), `no panel uses ${m}`);
  });

  it("uses only metrics and labels the services export in every expression", (t) => {
    const cat = metricCatalogue(ROOT);
    const problems = [];
    const exprs = dashboardExprs(dashboard());
    for (const { where, expr, label } of exprs) {
      problems.push(...checkExpr(expr, cat, where));
      if (label && !["namespace", "pod", "job", "instance"].includes(label)) problems.push(`${where}: label_values of ${label}`);
    }
    expectNone(problems, "dashboard expressions");
    t.diagnostic(`${exprs.length} expressions checked`);
  });
});

describe("the monitoring checks fail on broken input", () => {
  it("the rule unit tests fail when the lag threshold or the 5xx expression changes", () => {
    const raise = rulesObject().spec.groups;
    const lag = raise.flatMap((g) => g.rules).find((r) => r.alert === "CartshardWorkerLag");
    lag.expr = lag.expr.replace("> 1000", "> 100000");
    const r1 = promtool("test", "rules", writeRules(raise, rulesTests(), "lag").tests);
    assert.notEqual(r1.status, 0, "a lag alert that no longer fires fails its test");
    assert.match(r1.out, /CartshardWorkerLag/);

    const loose = rulesObject().spec.groups;
    const fives = loose.flatMap((g) => g.rules).find((r) => r.alert === "CartshardGateway5xxRate");
    fives.expr = fives.expr.replaceAll('status=~"5.."', 'status=~"[45].."');
    const r2 = promtool("test", "rules", writeRules(loose, rulesTests(), "5xx").tests);
    assert.notEqual(r2.status, 0, "counting 4xx as errors fails the 5xx test");
    assert.match(r2.out, /CartshardGateway5xxRate/);
  });

  it("promtool check rules refuses a rule that does not parse", () => {
    const groups = rulesObject().spec.groups;
    groups[0].rules[0].expr = "up{namespace=";
    const r = promtool("check", "rules", writeRules(groups, rulesTests(), "broken").rules);
    assert.notEqual(r.status, 0, r.out);
  });

  it("the expression check names an unknown metric, a label its metric lacks and an unknown grouping", () => {
    const cat = metricCatalogue(ROOT);
    expectSome(checkExpr("rate(cartshard_no_such_total[5m]) > 0", cat, "e1"), ["e1: metric cartshard_no_such_total is not exported"]);
    expectSome(checkExpr('cartshard_partition_lag{shard="1"} > 0', cat, "e2"), ["e2: cartshard_partition_lag has no label shard"]);
    expectSome(checkExpr("sum by (route) (cartshard_partition_lag)", cat, "e3"), ["e3: groups by route"]);
    expectSome(checkExpr('histogram_quantile(0.9, sum by (le) (rate(cartshard_batch_duration_seconds[5m])))', cat, "e4"), [
      "e4: metric cartshard_batch_duration_seconds is not exported",
    ]);
    expectNone(checkExpr('sum by (le, route) (rate(cartshard_http_request_duration_seconds_bucket{status="200"}[5m]))', cat, "ok"), "a good expression");
  });

  it("the alert and dashboard checks name what is missing", () => {
    const groups = rulesObject().spec.groups;
    const r = groups[0].rules[0];
    delete r.for;
    r.labels.severity = "page";
    delete r.annotations.description;
    expectSome(checkAlerts(groups), [`alert ${r.alert}: no for:`, `alert ${r.alert}: labels.severity: page`, `alert ${r.alert}: annotations.description: missing`]);
    const d = dashboard();
    d.panels[2].id = d.panels[1].id;
    d.panels[1].targets[0].expr = d.panels[1].targets[0].expr.replace("$namespace", "$cluster");
    expectSome(checkDashboard(d), ["used twice", "uses $cluster"]);
  });
});
