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

import {
  appContainers,
  checkAvailability,
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
  prod: { StatefulSet: ["nats", "redis"], Cluster: ["pg-shard-0", "pg-shard-1"] },
};
const BASE_EXPECTED = {
  Namespace: [NAMESPACE],
  Deployment: ["cart-gateway", "cart-store"],
  HorizontalPodAutoscaler: ["cart-gateway"],
  Service: ["cart-gateway", "nats", "nats-headless", "redis"],
  PodDisruptionBudget: ["cart-gateway", "cart-store", "nats", "redis"],
  NetworkPolicy: ["default-deny", "allow-dns"],
};
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
    expectSome(checkContainers(objs), [
      "Deployment/cart-gateway: containers[cart-gateway].readinessProbe: missing",
      "Deployment/cart-gateway: containers[cart-gateway].securityContext.readOnlyRootFilesystem: must be true",
      "Deployment/cart-gateway: containers[cart-gateway].resources.limits.memory: missing",
      'Deployment/cart-gateway: containers[cart-gateway].image: cartshard/cart-gateway:latest uses the tag "latest"',
      "Deployment/cart-store: initContainers[migrate].image: cartshard/cart-store has no tag",
      "Deployment/cart-store: containers[cart-store].securityContext.runAsNonRoot: must be true",
      "Deployment/cart-store: containers[cart-store].resources: requests.cpu (4) exceeds limits.cpu",
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
    expectSome(checkReferences(objs), ["Deployment/cart-gateway: container cart-gateway: env SHARD_1_USER: secretKeyRef pg-shard-1-credentials"]);

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
});
