// The checks of monitoring.test.mjs, as plain functions: the metric catalogue read off the C
// sources, and a small PromQL reader that lists the metrics and labels an expression uses. Each
// check returns a list of problems, empty when all is well, so the suite can also feed them
// broken expressions and watch them fail.

import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

// Labels the scrape adds to every series (Prometheus itself, a ServiceMonitor or PodMonitor).
export const TARGET_LABELS = new Set(["namespace", "pod", "job", "instance", "container", "service", "endpoint"]);

function cFiles(dir) {
  let out = [];
  let entries;
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out = out.concat(cFiles(p));
    else if (p.endsWith(".c")) out.push(p);
  }
  return out;
}

/**
 * The metrics the services register, read off their C sources under services/<service>/src and
 * shared/src: name -> {type, labels}. A name in a cart_metrics_family() call gets that call's
 * type and labels; any other "cartshard_…" literal (the services' one-series helpers) is a
 * metric without labels. A histogram is its _bucket (with le), _sum and _count series.
 */
export function metricCatalogue(root) {
  const dirs = [join(root, "shared", "src")];
  for (const s of readdirSync(join(root, "services"))) dirs.push(join(root, "services", s, "src"));
  const cat = {};
  for (const f of dirs.flatMap(cFiles)) {
    const text = readFileSync(f, "utf8");
    for (const m of text.matchAll(/cart_metrics_family\(\s*\w+,\s*"(cartshard_\w+)",[\s\S]*?CART_METRIC_(\w+),\s*(?:"([^"]*)"|NULL)/g)) {
      cat[m[1]] = { type: m[2].toLowerCase(), labels: m[3] ? m[3].split(",").map((l) => l.trim()) : [] };
    }
    for (const m of text.matchAll(/"(cartshard_[a-z0-9_]+)"/g)) {
      if (!cat[m[1]]) cat[m[1]] = { type: "untyped", labels: [] };
    }
  }
  for (const [name, def] of Object.entries(cat)) {
    if (def.type !== "histogram") continue;
    cat[`${name}_bucket`] = { type: "counter", labels: [...def.labels, "le"] };
    cat[`${name}_sum`] = { type: "counter", labels: def.labels };
    cat[`${name}_count`] = { type: "counter", labels: def.labels };
    delete cat[name]; // a histogram has no series of its bare name
  }
  cat.up = { type: "gauge", labels: [] };
  return cat;
}

const KEYWORDS = new Set(["by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset", "inf", "nan"]);

/**
 * What a PromQL expression uses: {metrics: [name], matchers: [{metric, label}], grouping: [label]}.
 * Strings, durations and ranges are skipped; an identifier followed by "(" is a function.
 */
export function promqlUses(expr) {
  const metrics = [];
  const matchers = [];
  const grouping = [];
  let s = expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""').replace(/\[[^\]]*\]/g, " ");
  // Grouping clauses first: by (a, b), without (…), on (…), ignoring (…), group_left (…).
  s = s.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g, (_, _kw, list) => {
    for (const l of list.split(",").map((x) => x.trim()).filter(Boolean)) grouping.push(l);
    return " ";
  });
  // Selectors with matchers: name{a="", b=~""}, or {__name__=…} alone.
  s = s.replace(/([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}/g, (_, name, body) => {
    if (name) metrics.push(name);
    for (const part of body.split(",")) {
      const l = part.trim().match(/^([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)/);
      if (l) matchers.push({ metric: name ?? null, label: l[1] });
    }
    return " ";
  });
  for (const m of s.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?/g)) {
    const [, id, call] = m;
    if (call || KEYWORDS.has(id.toLowerCase()) || /^\d/.test(id)) continue;
    // A duration like 5m or 1h is caught by the range removal; a bare number has no letters.
    metrics.push(id);
  }
  return { metrics, matchers, grouping };
}

/**
 * Checks one expression against the catalogue; `where` names it in the problems. Every metric must
 * exist, every matcher's label must be one of its metric's labels or a target label, and every
 * grouping label one of the expression's metrics' labels, a target label or le.
 */
export function checkExpr(expr, catalogue, where) {
  const problems = [];
  const { metrics, matchers, grouping } = promqlUses(expr);
  if (metrics.length === 0) problems.push(`${where}: uses no metric`);
  const known = new Set([...TARGET_LABELS, "le"]);
  for (const m of metrics) {
    if (!catalogue[m]) problems.push(`${where}: metric ${m} is not exported by any service`);
    else for (const l of catalogue[m].labels) known.add(l);
  }
  for (const { metric, label } of matchers) {
    if (!metric || !catalogue[metric]) continue;
    if (label !== "__name__" && !TARGET_LABELS.has(label) && !catalogue[metric].labels.includes(label))
      problems.push(`${where}: ${metric} has no label ${label} (it has ${catalogue[metric].labels.join(", ") || "none"})`);
  }
  for (const l of grouping) if (!known.has(l)) problems.push(`${where}: groups by ${l}, a label none of its metrics has`);
  return problems;
}

/** Every PromQL expression of a Grafana dashboard (panels, rows' panels, query variables): [{where, expr}]. */
export function dashboardExprs(dash) {
  const out = [];
  const walk = (panels, path) => {
    for (const p of panels || []) {
      for (const t of p.targets || []) out.push({ where: `${path}panel "${p.title}" ${t.refId}`, expr: t.expr });
      walk(p.panels, `${path}row "${p.title}": `);
    }
  };
  walk(dash.panels, "");
  for (const v of dash.templating?.list || []) {
    if (v.type !== "query") continue;
    const q = typeof v.query === "string" ? v.query : v.query?.query;
    const m = /^label_values\((.*),\s*([a-zA-Z_]\w*)\)$/.exec(q || "");
    out.push({ where: `variable ${v.name}`, expr: m ? m[1] : q, label: m?.[2] });
  }
  return out;
}

/** The dashboard's shape: unique panel ids, a Prometheus data source and an expression on every target. */
export function checkDashboard(dash) {
  const problems = [];
  if (!dash.title || !dash.uid) problems.push("dashboard: title and uid are required");
  const ids = new Set();
  const walk = (panels) => {
    for (const p of panels || []) {
      if (ids.has(p.id)) problems.push(`panel "${p.title}": id ${p.id} used twice`);
      ids.add(p.id);
      if (!p.gridPos) problems.push(`panel "${p.title}": no gridPos`);
      if (p.type !== "row") {
        if (p.datasource?.type !== "prometheus") problems.push(`panel "${p.title}": datasource is not Prometheus`);
        if (!p.targets?.length) problems.push(`panel "${p.title}": no targets`);
        for (const t of p.targets || []) if (!t.expr?.trim()) problems.push(`panel "${p.title}" ${t.refId}: empty expr`);
      }
      walk(p.panels);
    }
  };
  walk(dash.panels);
  const vars = new Set((dash.templating?.list || []).map((v) => v.name));
  for (const { where, expr } of dashboardExprs(dash)) {
    for (const m of (expr || "").matchAll(/\$\{?([a-zA-Z_]\w*)/g)) {
      if (!vars.has(m[1]) && !m[1].startsWith("__")) problems.push(`${where}: uses $${m[1]}, which is not a dashboard variable`);
    }
  }
  return problems;
}

/** The alerting rules of a PrometheusRule: every one with for, a severity, a summary and a description. */
export function checkAlerts(groups) {
  const problems = [];
  for (const g of groups) {
    for (const r of g.rules || []) {
      if (!r.alert) continue;
      const id = `alert ${r.alert}`;
      if (!r.for) problems.push(`${id}: no for:`);
      if (!["info", "warning", "critical"].includes(r.labels?.severity)) problems.push(`${id}: labels.severity: ${r.labels?.severity}, expected info, warning or critical`);
      for (const a of ["summary", "description"]) if (!r.annotations?.[a]) problems.push(`${id}: annotations.${a}: missing`);
    }
  }
  return problems;
}
