// The Kubernetes manifests (k8s/), checked offline: every overlay is rendered with
// `kubectl kustomize` (kustomize v2.0.3 in Debian 12's kubectl 1.20 and today's v5 alike), every
// object is validated against the JSON schema of its kind (kubernetes-models, and
// @kubernetes-models/cloudnative-pg for the CloudNativePG Cluster), then against the policies
// of this project (k8s-checks.mjs says each one). The last group feeds the checks broken
// objects and expects them to fail, so a check that cannot fail does not pass unnoticed.
//
//   cd tests/deploy && npm ci && CARTSHARD_ROOT=$PWD/../.. node --test k8s.test.mjs
//   (KUBECTL=/path/to/kubectl picks another kubectl)

import assert from "node:assert/strict";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { describe, it, before } from "node:test";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import {
  appContainers,
  checkAvailability,
  checkBackups,
  checkImagesAcrossDeployments,
  checkImagesAndRedis,
  checkIngress,
  checkMonitoring,
  checkNatsOperations,
  checkObjectStoreFields,
  checkProbes,
  checkRoles,
  checkRulesWithPromtool,
  checkShardTls,
  natsSize,
  testRulesWithPromtool,
  which,
  checkContainers,
  checkLabels,
  checkNats,
  checkNetworkPolicies,
  checkReferences,
  checkSecretsFake,
  checkShards,
  findRenderer,
  objId,
  parseYamlStream,
  render,
  validateSchema,
} from "./k8s-checks.mjs";

const ROOT = process.env.CARTSHARD_ROOT || resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const K8S = join(ROOT, "k8s");
const OVERLAYS_DIR = join(K8S, "overlays");
const OVERLAYS = existsSync(OVERLAYS_DIR)
  ? readdirSync(OVERLAYS_DIR)
      .filter((d) => existsSync(join(OVERLAYS_DIR, d, "kustomization.yaml")))
      .sort()
  : [];
const NAMESPACE = "cartshard";
const CLUSTER_SCOPED = new Set(["Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass", "StorageClass"]);

// What each overlay must contain besides what the base gives every overlay.
const EXPECTED = {
  dev: { StatefulSet: ["nats", "redis", "pg-shard-0", "pg-shard-1"], Service: ["pg-shard-0-rw", "pg-shard-1-rw"] },
  prod: {
    StatefulSet: ["nats", "redis"],
    Cluster: ["pg-shard-0", "pg-shard-1"],
    ObjectStore: ["pg-shard-0-backups", "pg-shard-1-backups"],
    ScheduledBackup: ["pg-shard-0-nightly", "pg-shard-1-nightly"],
    Ingress: ["cart-gateway"],
    PodMonitor: ["postgresql"],
    PrometheusRule: ["postgresql"],
  },
};
const BASE_EXPECTED = {
  Namespace: [NAMESPACE],
  Deployment: ["cart-gateway", "cart-store", "cart-stats"],
  HorizontalPodAutoscaler: ["cart-gateway"],
  Service: ["cart-gateway", "cart-stats", "nats", "nats-headless", "redis"],
  PodDisruptionBudget: ["cart-gateway", "cart-store", "cart-stats", "nats", "redis"],
  NetworkPolicy: ["default-deny", "allow-dns", "cart-stats"],
  PodMonitor: ["cart-gateway", "cart-store", "cart-stats", "nats", "redis"],
  // nats-store is the base's; cartshard-alerts and the dashboard come from k8s/monitoring.
  PrometheusRule: ["nats-store", "cartshard-alerts"],
  ConfigMap: ["cartshard-grafana-dashboard"],
};
// The prod overlay is held to more than dev: one NATS server per node, verify-full to the
// shards, backups, an Ingress.
const IS_PROD = (overlay) => overlay === "prod";
// promtool unit tests of the alerts of this repository's k8s/ (the services' own are k8s/monitoring's).
const RULES_DIR = join(dirname(fileURLToPath(import.meta.url)), "rules");
const RULE_TESTS = { natsStore: join(RULES_DIR, "nats-store.test.yaml"), postgresql: join(RULES_DIR, "postgresql.test.yaml") };
// Words that mark a value as a placeholder in the Secrets the repository ships.
const FAKE_MARKERS = ["dev-only", "CHANGE-ME"];
// The fields of a Kustomization that kustomize v2.0.3 (Debian 12's kubectl 1.20) knows.
const KUSTOMIZE_V2_FIELDS = new Set([
  "apiVersion", "kind", "namespace", "namePrefix", "nameSuffix", "commonLabels", "commonAnnotations",
  "resources", "bases", "patchesStrategicMerge", "patchesJson6902", "configMapGenerator",
  "secretGenerator", "generatorOptions", "images", "vars", "crds",
]);

const renderer = findRenderer();
const renders = new Map();

/** The rendered objects of an overlay (rendered once). */
function rendered(overlay) {
  if (!renders.has(overlay)) {
    assert.ok(renderer, "neither kubectl nor kustomize is on PATH: `scripts/dev test` installs Debian's kubernetes-client (kubectl 1.20) when kubectl is missing");
    renders.set(overlay, render(renderer, join(OVERLAYS_DIR, overlay)));
  }
  return renders.get(overlay);
}

/** The Secrets an operator creates by hand for an overlay (its secret.example.yaml), if any. */
function externalSecrets(overlay) {
  const f = join(OVERLAYS_DIR, overlay, "secret.example.yaml");
  return existsSync(f) ? parseYamlStream(readFileSync(f, "utf8"), f) : [];
}

function expectNone(problems, what) {
  assert.ok(problems.length === 0, `${what}: ${problems.length} problem(s):\n  ${problems.join("\n  ")}`);
}

function expectSome(problems, needles) {
  for (const n of needles) {
    assert.ok(
      problems.some((p) => p.includes(n)),
      `expected a problem mentioning "${n}", got:\n  ${problems.join("\n  ") || "(none)"}`,
    );
  }
}

const clone = (x) => structuredClone(x);
const find = (objs, kind, name) => objs.find((o) => o.kind === kind && o.metadata?.name === name);

describe("k8s: the manifests and the tools", () => {
  it("has the dev and prod overlays", () => {
    for (const o of ["dev", "prod"]) assert.ok(OVERLAYS.includes(o), `k8s/overlays/${o}/kustomization.yaml is missing`);
  });

  it("finds kubectl (or kustomize) to render them", (t) => {
    assert.ok(renderer, "neither kubectl nor kustomize is on PATH: `scripts/dev test` installs Debian's kubernetes-client (kubectl 1.20) when kubectl is missing");
    t.diagnostic(`renderer: ${renderer.label}`);
  });

  it("uses only Kustomization fields that kustomize v2.0.3 (Debian 12's kubectl) knows, and files as resources", () => {
    const problems = [];
    const dirs = [join(K8S, "base"), ...OVERLAYS.map((o) => join(OVERLAYS_DIR, o))];
    for (const d of dirs) {
      const k = parse(readFileSync(join(d, "kustomization.yaml"), "utf8"));
      const rel = d.slice(ROOT.length + 1);
      for (const f of Object.keys(k)) if (!KUSTOMIZE_V2_FIELDS.has(f)) problems.push(`${rel}/kustomization.yaml: ${f}: unknown to kustomize v2.0.3`);
      for (const r of k.resources || []) {
        const p = join(d, r);
        if (!existsSync(p)) problems.push(`${rel}/kustomization.yaml: resources: ${r} does not exist`);
        else if (statSync(p).isDirectory()) problems.push(`${rel}/kustomization.yaml: resources: ${r} is a directory (kustomize v2.0.3 wants it under bases)`);
      }
      for (const b of k.bases || []) if (!existsSync(join(d, b, "kustomization.yaml"))) problems.push(`${rel}/kustomization.yaml: bases: ${b} has no kustomization.yaml`);
    }
    expectNone(problems, "kustomizations");
  });
});

for (const overlay of OVERLAYS) {
  describe(`k8s/overlays/${overlay}`, () => {
    let objs;
    let external;
    before(() => {
      objs = rendered(overlay);
      external = externalSecrets(overlay);
    });

    it("renders to named objects in the cartshard namespace, each once", (t) => {
      const problems = [];
      const seen = new Set();
      for (const o of objs) {
        if (!o.apiVersion || !o.kind || !o.metadata?.name) problems.push(`${objId(o)}: apiVersion, kind and metadata.name are required`);
        if (!CLUSTER_SCOPED.has(o.kind) && o.metadata?.namespace !== NAMESPACE) problems.push(`${objId(o)}: metadata.namespace: ${o.metadata?.namespace}, expected ${NAMESPACE}`);
        const key = `${o.apiVersion} ${o.kind} ${o.metadata?.name}`;
        if (seen.has(key)) problems.push(`${objId(o)}: rendered twice`);
        seen.add(key);
      }
      const expected = { ...BASE_EXPECTED };
      for (const [kind, names] of Object.entries(EXPECTED[overlay] || {})) expected[kind] = [...(expected[kind] || []), ...names];
      for (const [kind, names] of Object.entries(expected)) for (const n of names) if (!find(objs, kind, n)) problems.push(`${kind}/${n}: missing from the render`);
      expectNone(problems, `overlay ${overlay}`);
      const kinds = {};
      for (const o of objs) kinds[o.kind] = (kinds[o.kind] || 0) + 1;
      t.diagnostic(`${objs.length} objects: ${Object.entries(kinds).map(([k, n]) => `${n} ${k}`).join(", ")}`);
    });

    it("validates every object against the JSON schema of its kind", async (t) => {
      const problems = [];
      for (const o of objs) problems.push(...(await validateSchema(o)));
      for (const o of external) problems.push(...(await validateSchema(o)).map((p) => `secret.example.yaml: ${p}`));
      expectNone(problems, "schema validation");
      t.diagnostic(`${objs.length} rendered objects${external.length ? ` and ${external.length} from secret.example.yaml` : ""} validated`);
    });

    it("labels every object and pod template with the app.kubernetes.io/* labels", () => {
      expectNone(checkLabels(objs), "labels");
    });

    it("gives every container resources, a locked-down security context, probes where it serves and a pinned image", () => {
      expectNone(checkContainers(objs), "containers");
    });

    it("gives every Deployment and StatefulSet a PodDisruptionBudget and a topology spread; the HPA and the CloudNativePG clusters are sound", () => {
      expectNone(checkAvailability(objs), "availability");
    });

    it("refers only to ConfigMaps and Secrets that exist (or that secret.example.yaml shows), with $(VAR)s defined before use", () => {
      expectNone(checkReferences(objs, external), "references");
    });

    it("gives every cartshard container the same shards in the same order, each one a PostgreSQL of the render", () => {
      expectNone(checkShards(objs), "shards");
    });

    it("runs NATS as a three-server JetStream cluster and creates the streams with 3 replicas", () => {
      expectNone(checkNats(objs), "NATS");
    });

    it("denies all traffic by default and allows exactly the flows cartshard needs", () => {
      expectNone(checkNetworkPolicies(objs), "network policies");
    });

    it("ships only placeholder values in its Secrets", () => {
      expectNone(checkSecretsFake([...objs, ...external], FAKE_MARKERS), "secrets");
    });

    it("probes readiness on /readyz and liveness on /healthz, NATS as its chart does, sidecars only themselves", () => {
      expectNone(checkProbes(objs), "probes");
    });

    it("restarts NATS safely: pid_file, lame duck preStop, GOMEMLIMIT, an explicit max_file_store under the volume, an alert before it" + (IS_PROD(overlay) ? ", one server per node" : ""), () => {
      expectNone(checkNatsOperations(objs, { strictHostSpread: IS_PROD(overlay) }), "NATS operations");
    });

    it("migrates with the owner's role and runs the services with a runtime role", () => {
      expectNone(checkRoles(objs, external), "roles");
    });

    it("keeps the gateway's /metrics, /healthz and /readyz off every Ingress" + (IS_PROD(overlay) ? ", and routes the API through one" : ""), () => {
      expectNone(checkIngress(objs, { requireIngress: IS_PROD(overlay) }), "ingress");
    });

    it("scrapes the gateways, workers, cart-stats, NATS, Redis" + (IS_PROD(overlay) ? " and CloudNativePG" : "") + " through monitors whose ports the policies open", () => {
      expectNone(checkMonitoring(objs), "monitoring");
    });

    it("passes `promtool check rules` with every PrometheusRule", (t) => {
      const promtool = which("promtool");
      assert.ok(promtool, "promtool is not on PATH: `scripts/dev test` installs Debian's prometheus package for it");
      const dir = mkdtempSync(join(tmpdir(), "cartshard-rules-"));
      try {
        expectNone(checkRulesWithPromtool(objs, promtool, dir), "promtool");
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      t.diagnostic(`${objs.filter((o) => o.kind === "PrometheusRule").length} PrometheusRule objects checked`);
    });

    it("fires the NATS store" + (IS_PROD(overlay) ? " and PostgreSQL" : "") + " alerts when they should and not before (`promtool test rules`)", () => {
      const promtool = which("promtool");
      assert.ok(promtool, "promtool is not on PATH: `scripts/dev test` installs Debian's prometheus package for it");
      const dir = mkdtempSync(join(tmpdir(), "cartshard-rules-"));
      try {
        expectNone(testRulesWithPromtool(objs, "nats-store", RULE_TESTS.natsStore, promtool, dir), "rule tests");
        if (IS_PROD(overlay)) expectNone(testRulesWithPromtool(objs, "postgresql", RULE_TESTS.postgresql, promtool, dir), "rule tests");
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it("uses one name per cartshard image, a patched Redis run as a cache, and no password on a command line", () => {
      expectNone(checkImagesAndRedis(objs), "images");
    });

    it("runs the same cartshard images as docker/ builds and compose runs, and a patched Redis there too", () => {
      expectNone(checkImagesAcrossDeployments(objs, readFileSync(join(ROOT, "docker", "compose.yaml"), "utf8"), readFileSync(join(ROOT, "docker", "Dockerfile"), "utf8")), "images across deployments");
    });

    if (IS_PROD(overlay)) {
      it("verifies every shard's certificate (verify-full) against its Cluster's CA", () => {
        expectNone(checkShardTls(objs), "shard TLS");
      });

      it("archives WAL and takes scheduled base backups of every shard with the Barman Cloud plugin", () => {
        expectNone(checkBackups(objs), "backups");
      });
    }
  });
}

describe("k8s: the checks fail on broken objects", () => {
  let dev;
  before(() => {
    dev = rendered("dev");
  });

  it("schema validation refuses a wrongly typed Deployment, CloudNativePG Cluster and NetworkPolicy, and unknown kinds", async () => {
    const d = clone(find(dev, "Deployment", "cart-gateway"));
    d.spec.template.spec.containers[0].ports[0].containerPort = "eighty";
    expectSome(await validateSchema(d), ["Deployment/cart-gateway: schema", "containerPort"]);

    const c = {
      apiVersion: "postgresql.cnpg.io/v1",
      kind: "Cluster",
      metadata: { name: "broken", namespace: NAMESPACE },
      spec: { instances: "three", storage: { size: "1Gi" } },
    };
    expectSome(await validateSchema(c), ["Cluster/broken: schema", "instances"]);
    const c2 = { ...c, spec: { instances: 3, storage: { size: "1Gi" }, primaryUpdateStrategy: "whenever" } };
    expectSome(await validateSchema(c2), ["Cluster/broken: schema", "primaryUpdateStrategy"]);

    const np = clone(find(dev, "NetworkPolicy", "nats"));
    np.spec.ingress[0].ports[0].protocol = "TPC";
    expectSome(await validateSchema(np), ["NetworkPolicy/nats: schema", "protocol"]);

    const h = clone(find(dev, "HorizontalPodAutoscaler", "cart-gateway"));
    delete h.spec.scaleTargetRef;
    expectSome(await validateSchema(h), ["HorizontalPodAutoscaler/cart-gateway: schema", "scaleTargetRef"]);

    expectSome(await validateSchema({ apiVersion: "example.com/v1", kind: "Widget", metadata: { name: "w" } }), ["Widget/w: apiVersion/kind: no schema known"]);

    // The CRDs of the operators: the Prometheus Operator's PodMonitor and PrometheusRule, and
    // CloudNativePG's ScheduledBackup.
    const pm = clone(find(dev, "PodMonitor", "nats"));
    pm.spec.podMetricsEndpoints[0].port = 7777;
    expectSome(await validateSchema(pm), ["PodMonitor/nats: schema", "port"]);
    const pr = clone(find(dev, "PrometheusRule", "nats-store"));
    pr.spec.groups[0].rules[0].for = 15;
    expectSome(await validateSchema(pr), ["PrometheusRule/nats-store: schema", "for"]);
    const sb = clone(find(rendered("prod"), "ScheduledBackup", "pg-shard-0-nightly"));
    sb.spec.method = "barman";
    expectSome(await validateSchema(sb), ["ScheduledBackup/pg-shard-0-nightly: schema", "method"]);
  });

  it("the container policy names the object and the field", () => {
    const objs = clone(dev);
    const gw = find(objs, "Deployment", "cart-gateway");
    const c = gw.spec.template.spec.containers[0];
    delete c.readinessProbe;
    c.securityContext.readOnlyRootFilesystem = false;
    delete c.resources.limits.memory;
    c.image = "cartshard/cart-gateway:latest";
    const st = find(objs, "Deployment", "cart-store");
    st.spec.template.spec.initContainers[0].image = "cartshard/cart-store";
    st.spec.template.spec.securityContext.runAsNonRoot = false;
    delete st.spec.template.spec.containers[0].securityContext.runAsNonRoot;
    st.spec.template.spec.containers[0].resources.requests.cpu = "4";
    find(objs, "StatefulSet", "redis").spec.template.spec.containers[0].command = ["/bin/sh", "-c", "printf 'requirepass x' |\nexec redis-server -"];
    expectSome(checkContainers(objs), [
      "Deployment/cart-gateway: containers[cart-gateway].readinessProbe: missing",
      "Deployment/cart-gateway: containers[cart-gateway].securityContext.readOnlyRootFilesystem: must be true",
      "Deployment/cart-gateway: containers[cart-gateway].resources.limits.memory: missing",
      'Deployment/cart-gateway: containers[cart-gateway].image: cartshard/cart-gateway:latest uses the tag "latest"',
      "Deployment/cart-store: initContainers[migrate].image: cartshard/cart-store has no tag",
      "Deployment/cart-store: containers[cart-store].securityContext.runAsNonRoot: must be true",
      "Deployment/cart-store: containers[cart-store].resources: requests.cpu (4) exceeds limits.cpu",
      "StatefulSet/redis: containers[redis].command: sh -c without an exec of the program",
    ]);
  });

  it("the availability policy misses a PDB, a spread that selects other pods and a fixed replica count under an HPA", () => {
    const objs = clone(dev).filter((o) => !(o.kind === "PodDisruptionBudget" && o.metadata.name === "cart-store"));
    find(objs, "StatefulSet", "nats").spec.template.spec.topologySpreadConstraints[0].labelSelector.matchLabels["app.kubernetes.io/name"] = "natz";
    find(objs, "Deployment", "cart-gateway").spec.replicas = 3;
    expectSome(checkAvailability(objs), [
      "Deployment/cart-store: no PodDisruptionBudget selects its pods",
      "StatefulSet/nats: spec.template.spec.topologySpreadConstraints[0].labelSelector does not select its own pods",
      "Deployment/cart-gateway: spec.replicas: set although HorizontalPodAutoscaler/cart-gateway scales it",
    ]);
    const prod = clone(rendered("prod"));
    find(prod, "Cluster", "pg-shard-1").spec.instances = 1;
    expectSome(checkAvailability(prod), ["Cluster/pg-shard-1: spec.instances: 1, expected 3"]);
  });

  it("the NATS policy wants 3 servers and streams with 3 replicas", () => {
    const objs = clone(dev);
    find(objs, "StatefulSet", "nats").spec.replicas = 1;
    const cm = objs.find((o) => o.kind === "ConfigMap" && o.metadata.name.startsWith("cartshard-config"));
    cm.data.CART_STREAM_REPLICAS = "1";
    expectSome(checkNats(objs), ["StatefulSet/nats: spec.replicas: 1, expected 3", "container migrate: CART_STREAM_REPLICAS is 1, expected 3"]);
  });

  it("the reference and shard policies catch a missing Secret, a $(VAR) used too early, differing or unknown shards", () => {
    const objs = clone(dev).filter((o) => !(o.kind === "Secret" && o.metadata.name.startsWith("pg-shard-1-credentials")));
    expectSome(checkReferences(objs), ["Deployment/cart-store: container migrate: env SHARD_1_USER: secretKeyRef pg-shard-1-credentials"]);
    const noRuntime = clone(dev).filter((o) => !(o.kind === "Secret" && o.metadata.name.startsWith("pg-shard-0-runtime")));
    expectSome(checkReferences(noRuntime), ["Deployment/cart-stats: container cart-stats: env SHARD_0_USER: secretKeyRef pg-shard-0-runtime"]);
    // prod: the operator's CA Secret counts only while its Cluster is rendered; the managed
    // role's Secret must exist with the role's name; an ObjectStore's credentials must exist.
    const prod = clone(rendered("prod")).filter((o) => !(o.kind === "Cluster" && o.metadata.name === "pg-shard-1"));
    expectSome(checkReferences(prod, externalSecrets("prod")), ["Deployment/cart-gateway: volume pg-ca: projected secret pg-shard-1-ca: no such Secret"]);
    const ext = clone(externalSecrets("prod"));
    ext.find((x) => x.metadata.name === "pg-shard-0-runtime").stringData.username = "cartshard";
    const noS3 = ext.filter((x) => x.metadata.name !== "cartshard-backup-s3");
    expectSome(checkReferences(rendered("prod"), noS3), [
      'Cluster/pg-shard-0: spec.managed.roles[cartshard_app].passwordSecret pg-shard-0-runtime: username must be the role "cartshard_app"',
      "ObjectStore/pg-shard-0-backups: spec.configuration credentials accessKeyId: Secret cartshard-backup-s3: no such Secret",
    ]);

    const objs2 = clone(dev);
    const env = find(objs2, "Deployment", "cart-store").spec.template.spec.containers[0].env;
    env.unshift(...env.splice(env.findIndex((e) => e.name === "SHARD_DSNS"), 1));
    expectSome(checkReferences(objs2), ["Deployment/cart-store: container cart-store: env SHARD_DSNS: refers to $(SHARD_0_USER), which is not defined above it"]);

    const objs3 = clone(dev);
    const e3 = find(objs3, "Deployment", "cart-gateway").spec.template.spec.containers[0].env.find((e) => e.name === "SHARD_DSNS");
    e3.value = e3.value.split(",").reverse().join(",");
    expectSome(checkShards(objs3), ["SHARD_DSNS differs between containers"]);
    for (const { c } of appContainers(objs3)) {
      const e = c.env.find((x) => x.name === "SHARD_DSNS");
      e.value = e3.value;
    }
    assert.deepEqual(checkShards(objs3), [], "the same order everywhere is consistent, whichever it is");
    const reversed = e3.value;
    for (const { c } of appContainers(objs3)) {
      const e = c.env.find((x) => x.name === "SHARD_DSNS");
      e.value = `${reversed},host=pg-shard-9-rw password=secret`;
    }
    expectSome(checkShards(objs3), [
      "SHARD_DSNS entry 2: host pg-shard-9-rw: no Service and no CloudNativePG Cluster pg-shard-9",
      "SHARD_DSNS entry 2: a literal password in a manifest",
    ]);
    for (const { c } of appContainers(objs3)) {
      const e = c.env.find((x) => x.name === "SHARD_DSNS");
      e.value = `${reversed},${reversed.split(",")[0]}`;
    }
    expectSome(checkShards(objs3), ["SHARD_DSNS entry 2: host pg-shard-1-rw appears twice"]);
  });

  it("the network policy evaluation sees a missing allow and a needless one", () => {
    const objs = clone(dev).filter((o) => !(o.kind === "NetworkPolicy" && o.metadata.name === "nats"));
    expectSome(checkNetworkPolicies(objs), [
      "StatefulSet/nats: no NetworkPolicy of its own selects its pods",
      "NetworkPolicy: Deployment/cart-gateway -> StatefulSet/nats:4222/TCP is needed but not allowed",
    ]);
    const open = clone(dev);
    open.push({
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      metadata: { name: "allow-all-redis", namespace: NAMESPACE },
      spec: { podSelector: { matchLabels: { "app.kubernetes.io/name": "redis" } }, policyTypes: ["Ingress"], ingress: [{}] },
    });
    expectSome(checkNetworkPolicies(open), ["NetworkPolicy: a client on the internet -> StatefulSet/redis:6379/TCP is allowed but nothing needs it"]);
    const noDeny = clone(dev).filter((o) => !(o.kind === "NetworkPolicy" && o.metadata.name === "default-deny"));
    expectSome(checkNetworkPolicies(noDeny), ["NetworkPolicy: no default deny"]);
  });

  it("the label and secret policies catch a missing label and a real-looking password", () => {
    const objs = clone(dev);
    delete find(objs, "Service", "redis").metadata.labels["app.kubernetes.io/component"];
    expectSome(checkLabels(objs), ["Service/redis: labels: missing app.kubernetes.io/component"]);
    const s = { apiVersion: "v1", kind: "Secret", metadata: { name: "leak" }, stringData: { password: "hunter2hunter2" } };
    expectSome(checkSecretsFake([s], FAKE_MARKERS), ["Secret/leak: key password: does not look like a placeholder"]);
  });

  it("the probe policy wants /readyz for readiness, /healthz for liveness, NATS's startup on the full /healthz, sidecars on their own ports", () => {
    const objs = clone(dev);
    const gw = find(objs, "Deployment", "cart-gateway").spec.template.spec.containers[0];
    gw.livenessProbe.httpGet.path = "/readyz";
    find(objs, "Deployment", "cart-stats").spec.template.spec.containers[0].readinessProbe.httpGet.path = "/healthz";
    const nats = find(objs, "StatefulSet", "nats").spec.template.spec;
    nats.containers[0].startupProbe.httpGet.path = "/healthz?js-enabled-only=true";
    nats.containers[0].startupProbe.failureThreshold = 12;
    nats.containers[1].readinessProbe = { httpGet: { path: "/healthz", port: "monitor" } };
    expectSome(checkProbes(objs), [
      "Deployment/cart-gateway: container cart-gateway.livenessProbe: must be httpGet /healthz, is httpGet /readyz",
      "Deployment/cart-stats: container cart-stats.readinessProbe: must be httpGet /readyz, is httpGet /healthz",
      "StatefulSet/nats: container nats.startupProbe: must be httpGet /healthz (the full check",
      "StatefulSet/nats: container nats.startupProbe: a budget of 120 s",
      "StatefulSet/nats: container exporter.readinessProbe: port monitor is not the sidecar's own",
    ]);
  });

  it("the NATS operations policy catches a missing pid_file, preStop, GOMEMLIMIT, GOMAXPROCS, limit or alert, a limit over the volume, a soft spread in prod", () => {
    const objs = clone(dev);
    const cm = objs.find((o) => o.kind === "ConfigMap" && o.metadata.name.startsWith("nats-config"));
    cm.data["nats.conf"] = cm.data["nats.conf"].replace(/^pid_file:.*$/m, "");
    cm.data["jetstream.conf"] = cm.data["jetstream.conf"].replace(/^\s*max_file_store:.*$/m, "");
    const sts = find(objs, "StatefulSet", "nats");
    sts.spec.template.spec.containers[0].env = sts.spec.template.spec.containers[0].env.filter((e) => e.name !== "GOMEMLIMIT" && e.name !== "GOMAXPROCS");
    sts.spec.template.spec.terminationGracePeriodSeconds = 30;
    const noAlert = objs.filter((o) => o.kind !== "PrometheusRule");
    expectSome(checkNatsOperations(noAlert), [
      "pid_file: not set",
      "StatefulSet/nats: container nats: env GOMEMLIMIT: not set",
      "StatefulSet/nats: container nats: env GOMAXPROCS: not set",
      "StatefulSet/nats: spec.template.spec.terminationGracePeriodSeconds: 30",
      "jetstream.max_file_store: not set",
      "PrometheusRule: no alert compares nats_varz_jetstream_stats_storage",
    ]);
    const big = clone(dev);
    const cm2 = big.find((o) => o.kind === "ConfigMap" && o.metadata.name.startsWith("nats-config"));
    cm2.data["jetstream.conf"] = cm2.data["jetstream.conf"].replace(/max_file_store:.*$/m, "max_file_store: 2GB");
    cm2.data["nats.conf"] += "\ninclude ./missing.conf\n";
    find(big, "StatefulSet", "nats").spec.template.spec.containers[0].env.find((e) => e.name === "GOMEMLIMIT").value = "512MiB";
    find(big, "StatefulSet", "nats").spec.template.spec.containers[0].lifecycle.preStop.exec.command = ["sleep", "30"];
    find(big, "StatefulSet", "nats").spec.template.spec.containers[0].env.find((e) => e.name === "GOMAXPROCS").valueFrom.resourceFieldRef.resource = "requests.cpu";
    expectSome(checkNatsOperations(big), [
      "jetstream.max_file_store: 2GB (2147483648 bytes) is more than 90 % of the volume (2Gi)",
      "include ./missing.conf: no such key",
      "env GOMEMLIMIT: 512MiB is not between 50 and 95 % of the memory limit 512Mi",
      "env GOMAXPROCS: must come from this container's limits.cpu (resourceFieldRef, divisor 1)",
      'StatefulSet/nats: container nats.lifecycle.preStop: must put the server into lame duck mode (nats-server --signal ldm=/var/run/nats/nats.pid), is "sleep 30"',
    ]);
    // dev's spread is soft (one node suffices); prod's must be hard.
    expectSome(checkNatsOperations(clone(dev), { strictHostSpread: true }), ["StatefulSet/nats: spec.template.spec: nothing keeps the 3 servers on different nodes"]);
    assert.equal(natsSize("40GB"), 40 * 2 ** 30);
    assert.equal(natsSize("1G"), 1e9);
    assert.ok(Number.isNaN(natsSize("forty")));
  });

  it("the role policy catches services that log in as the owner, and a Cluster whose runtime role is not declared", () => {
    const objs = clone(dev);
    const owner = find(objs, "Deployment", "cart-store").spec.template.spec.initContainers[0].env.find((e) => e.name === "SHARD_0_USER").valueFrom.secretKeyRef.name;
    for (const { c } of appContainers(objs))
      for (const e of c.env || []) if (e.valueFrom?.secretKeyRef?.name?.startsWith("pg-shard-0-runtime")) e.valueFrom.secretKeyRef.name = owner;
    expectSome(checkRoles(objs), ["SHARD_DSNS entry 0 (pg-shard-0-rw): migrate and the services log in with the same Secret"]);
    const prod = clone(rendered("prod"));
    find(prod, "Cluster", "pg-shard-1").spec.managed.roles = [];
    find(prod, "Cluster", "pg-shard-0").spec.bootstrap.initdb.postInitApplicationSQL = ["CREATE ROLE cartshard_rw NOLOGIN"];
    expectSome(checkRoles(prod, externalSecrets("prod")), [
      "Cluster/pg-shard-1: spec.managed.roles: no role with passwordSecret pg-shard-1-runtime",
      "Cluster/pg-shard-0: spec.managed.roles[cartshard_app]: none of its inRoles (cartshard_rw) gets the owner's tables",
    ]);
  });

  it("the TLS policy wants verify-full and each shard's own CA, required", () => {
    const prod = clone(rendered("prod"));
    const cm = prod.find((o) => o.kind === "ConfigMap" && o.metadata.name.startsWith("cartshard-config"));
    cm.data.PGSSLMODE = "require";
    expectSome(checkShardTls(prod), ["Deployment/cart-gateway: container cart-gateway: SHARD_DSNS entry 0: sslmode require, expected verify-full"]);
    const prod2 = clone(rendered("prod"));
    const src = find(prod2, "Deployment", "cart-stats").spec.template.spec.volumes.find((v) => v.name === "pg-ca").projected.sources;
    src[1].secret.name = "pg-shard-0-ca";
    src[0].secret.optional = true;
    expectSome(checkShardTls(prod2), [
      "Deployment/cart-stats: container cart-stats: SHARD_DSNS entry 1: sslrootcert /etc/cartshard/pg-ca/pg-shard-1/ca.crt is not ca.crt of the Secret pg-shard-1-ca",
      "Deployment/cart-stats: container cart-stats: SHARD_DSNS entry 0: the Secret pg-shard-0-ca is optional",
    ]);
    expectSome(checkShardTls(clone(dev)), ["SHARD_DSNS entry 0: sslmode prefer, expected verify-full"]);
  });

  it("the backup policy and the ObjectStore's hand-written fields catch a cluster without archiving, a shared destination, a bad schedule, typos", () => {
    const prod = clone(rendered("prod"));
    delete find(prod, "Cluster", "pg-shard-0").spec.plugins;
    find(prod, "ObjectStore", "pg-shard-1-backups").spec.configuration.destinationPath = find(prod, "ObjectStore", "pg-shard-0-backups").spec.configuration.destinationPath;
    find(prod, "ScheduledBackup", "pg-shard-1-nightly").spec.schedule = "0 2 * * *";
    expectSome(checkBackups(prod), [
      "Cluster/pg-shard-0: spec.plugins: no barman-cloud.cloudnative-pg.io",
      "ObjectStore/pg-shard-1-backups: spec.configuration.destinationPath s3://CHANGE-ME-cartshard-backups/pg-shard-0 is also ObjectStore/pg-shard-0-backups's",
      'ScheduledBackup/pg-shard-1-nightly: spec.schedule: "0 2 * * *" is not six fields',
    ]);
    const noSb = clone(rendered("prod")).filter((o) => o.kind !== "ScheduledBackup");
    expectSome(checkBackups(noSb), ["Cluster/pg-shard-1: no ScheduledBackup takes its base backups"]);
    const os = clone(find(rendered("prod"), "ObjectStore", "pg-shard-0-backups"));
    os.spec.configuration.wal.compresion = "gzip";
    os.spec.configuration.data.compression = "rar";
    os.spec.retentionPolicy = "30 days";
    os.spec.configuration.googleCredentials = { gkeEnvironment: "yes" };
    expectSome(checkObjectStoreFields(os), [
      "spec.configuration.wal.compresion: unknown field",
      "spec.configuration.googleCredentials.gkeEnvironment: must be a boolean",
      "spec.configuration.data.compression: rar is not one of",
      "spec.retentionPolicy: 30 days is not",
      "exactly one of s3Credentials, azureCredentials, googleCredentials, got 2",
    ]);
  });

  it("the ingress and monitoring policies catch /metrics on the Ingress, a missing monitor, a port Prometheus may not reach", () => {
    const prod = clone(rendered("prod"));
    find(prod, "Ingress", "cart-gateway").spec.rules[0].http.paths[0].path = "/";
    expectSome(checkIngress(prod), [
      "Ingress/cart-gateway: path / (Prefix) lets the internet reach the gateway's /metrics",
      "Ingress/cart-gateway: path / (Prefix) lets the internet reach the gateway's /healthz",
    ]);
    expectSome(checkIngress(clone(dev), { requireIngress: true }), ["Ingress: none leads to cart-gateway"]);
    assert.deepEqual(checkIngress(rendered("prod"), { requireIngress: true }), [], "/v1/ (Prefix) reaches none of them");

    const objs = clone(dev).filter((o) => !(o.kind === "PodMonitor" && o.metadata.name === "redis"));
    find(objs, "PodMonitor", "nats").spec.podMetricsEndpoints[0].port = "monitor";
    find(objs, "PodMonitor", "cart-stats").spec.podMetricsEndpoints[0].port = "admin";
    const np = find(objs, "NetworkPolicy", "cart-store");
    np.spec.ingress = [];
    expectSome(checkMonitoring(objs), [
      "no PodMonitor or ServiceMonitor scrapes redis",
      "PodMonitor/nats: port monitor (8222) is the server's JSON monitoring",
      "PodMonitor/cart-stats: port admin: Deployment/cart-stats declares no such port",
      "PodMonitor/cart-store: NetworkPolicy: Prometheus (namespace monitoring) may not reach Deployment/cart-store:9101",
    ]);
    // A ServiceMonitor instead of a PodMonitor: its port must be one of the Service's, and
    // Prometheus must reach the pods behind it.
    const sm = clone(dev).filter((o) => !(o.kind === "PodMonitor" && o.metadata.name === "cart-stats"));
    sm.push({
      apiVersion: "monitoring.coreos.com/v1",
      kind: "ServiceMonitor",
      metadata: { name: "cart-stats", namespace: NAMESPACE },
      spec: { selector: { matchLabels: { "app.kubernetes.io/name": "cart-stats" } }, endpoints: [{ port: "metrics" }] },
    });
    expectSome(checkMonitoring(sm), ["ServiceMonitor/cart-stats: port metrics: Service/cart-stats has no such port"]);
    sm.at(-1).spec.endpoints[0].port = "http";
    assert.deepEqual(checkMonitoring(sm), [], "a ServiceMonitor on the Service's port http covers cart-stats");
    find(sm, "NetworkPolicy", "cart-stats").spec.ingress = [];
    expectSome(checkMonitoring(sm), ["ServiceMonitor/cart-stats: NetworkPolicy: Prometheus (namespace monitoring) may not reach Deployment/cart-stats:9201"]);
    const prod2 = clone(rendered("prod")).filter((o) => !(o.kind === "PodMonitor" && o.metadata.name === "postgresql"));
    expectSome(checkMonitoring(prod2), ["no PodMonitor or ServiceMonitor scrapes the CloudNativePG instances"]);
  });

  it("promtool refuses a broken rule, and the image policy an old Redis, a second name, a password in argv", (t) => {
    const promtool = which("promtool");
    assert.ok(promtool, "promtool is not on PATH");
    const objs = clone(dev);
    find(objs, "PrometheusRule", "nats-store").spec.groups[0].rules[0].expr = "max by (pod) (nats_varz_jetstream_stats_storage";
    const dir = mkdtempSync(join(tmpdir(), "cartshard-rules-"));
    try {
      expectSome(checkRulesWithPromtool(objs, promtool, dir), ["PrometheusRule/nats-store: promtool check rules:"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const raised = clone(dev);
    find(raised, "PrometheusRule", "nats-store").spec.groups[0].rules[0].expr = find(raised, "PrometheusRule", "nats-store").spec.groups[0].rules[0].expr.replace("> 0.8", "> 0.9");
    const dir2 = mkdtempSync(join(tmpdir(), "cartshard-rules-"));
    try {
      expectSome(testRulesWithPromtool(raised, "nats-store", RULE_TESTS.natsStore, promtool, dir2), ["PrometheusRule/nats-store: promtool test rules:", "NatsJetStreamStoreFilling"]);
    } finally {
      rmSync(dir2, { recursive: true, force: true });
    }
    const im = clone(dev);
    const r = find(im, "StatefulSet", "redis").spec.template.spec.containers[0];
    r.image = "redis:7.2.5-alpine";
    r.command = ["redis-server", "--requirepass", "$(REDIS_PASSWORD)", "--appendonly", "yes"];
    find(im, "Deployment", "cart-gateway").spec.template.spec.containers[0].image = "cartshard/gateway:0.1.0";
    expectSome(checkImagesAndRedis(im), [
      "StatefulSet/redis: container redis.image: redis:7.2.5-alpine: Redis before 7.2.11 has known CVEs",
      "StatefulSet/redis: container redis: a password on the command line",
      "StatefulSet/redis: container redis: Redis is a cache: --maxmemory",
      "StatefulSet/redis: container redis: Redis is a cache: --appendonly no",
      "Deployment/cart-gateway: container cart-gateway.image: cartshard/gateway:0.1.0: cartshard's images are",
    ]);
    const compose = readFileSync(join(ROOT, "docker", "compose.yaml"), "utf8");
    const dockerfile = readFileSync(join(ROOT, "docker", "Dockerfile"), "utf8");
    expectSome(checkImagesAcrossDeployments(dev, compose.replace(/cartshard\}\/cart-gateway:/g, "cartshard}/gateway:").replace(/redis:7\.2\.\d+/g, "redis:7.2.5"), dockerfile.replace(/AS cart-stats/g, "AS stats")), [
      "cartshard/cart-gateway: run by the manifests, but docker/compose.yaml runs",
      "cartshard/gateway: run by docker/compose.yaml, not by the manifests",
      "cartshard/cart-stats: run by the manifests, but docker/Dockerfile builds the targets",
      "docker/compose.yaml: redis:7.2.5: Redis before 7.2.11",
    ]);
    t.diagnostic("a broken rule, an old Redis and a stray image name refused");
  });
});
