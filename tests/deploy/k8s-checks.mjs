// The checks of k8s.test.mjs, as plain functions over parsed objects: each returns a list of
// problems ("<Kind>/<name>: <field>: <what is wrong>"), empty when all is well. Keeping them
// pure lets the suite feed them deliberately broken objects and watch them fail.

import { execFileSync } from "node:child_process";
import { accessSync, constants, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments, stringify } from "yaml";

/* ------------------------------------------------------------------------------------------ */
/* Rendering                                                                                  */
/* ------------------------------------------------------------------------------------------ */

/** Finds a program on PATH; returns its path or null. */
export function which(name) {
  for (const dir of (process.env.PATH || "").split(":")) {
    if (!dir) continue;
    try {
      accessSync(`${dir}/${name}`, constants.X_OK);
      return `${dir}/${name}`;
    } catch {
      /* not here */
    }
  }
  return null;
}

/**
 * The renderer: $KUBECTL (or kubectl on PATH) with its embedded kustomize, else a standalone
 * kustomize. Returns {argv, label} or null when there is none.
 */
export function findRenderer() {
  const kubectl = process.env.KUBECTL || which("kubectl");
  if (kubectl) {
    let version = "";
    try {
      version = execFileSync(kubectl, ["version", "--client"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })
        .split("\n")
        .slice(0, 2)
        .join(" ")
        .trim();
    } catch {
      /* old clients print the version differently; the label is only informative */
    }
    return { argv: [kubectl, "kustomize"], label: `${kubectl} kustomize (${version})` };
  }
  const kustomize = which("kustomize");
  if (kustomize) return { argv: [kustomize, "build"], label: `${kustomize} build` };
  return null;
}

/** Renders one kustomization directory; returns the list of objects. Throws with kustomize's words. */
export function render(renderer, dir) {
  let out;
  try {
    out = execFileSync(renderer.argv[0], [...renderer.argv.slice(1), dir], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      timeout: 120000,
      maxBuffer: 64 * 1024 * 1024,
    });
  } catch (e) {
    throw new Error(`${renderer.label} ${dir} failed: ${(e.stderr || e.message || "").toString().trim()}`);
  }
  return parseYamlStream(out, dir);
}

/** Parses a multi-document YAML text into plain objects (empty documents skipped). */
export function parseYamlStream(text, where) {
  const objs = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`${where}: YAML: ${doc.errors[0].message}`);
    const v = doc.toJS();
    if (v != null) objs.push(v);
  }
  return objs;
}

/* ------------------------------------------------------------------------------------------ */
/* Schemas                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/** The module of the model for an apiVersion and kind, or null when no package models it. */
export function modelModule(apiVersion, kind) {
  if (apiVersion === "postgresql.cnpg.io/v1") return `@kubernetes-models/cloudnative-pg/postgresql.cnpg.io/v1/${kind}`;
  if (apiVersion === "monitoring.coreos.com/v1") return `@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/${kind}`;
  if (!/^[A-Za-z0-9.-]+(\/v[0-9a-z]+)?$/.test(apiVersion || "") || !/^[A-Z][A-Za-z0-9]*$/.test(kind || "")) return null;
  return `kubernetes-models/${apiVersion}/${kind}`; // "v1" (core) and "group/version" alike
}

/**
 * Validates one object against the JSON schema of its kind (kubernetes-models,
 * @kubernetes-models/cloudnative-pg for the CloudNativePG CRDs and
 * @kubernetes-models/prometheus-operator for PodMonitor, ServiceMonitor and PrometheusRule);
 * offline, the schemas are compiled into those packages. The Barman Cloud plugin's
 * ObjectStore has no such package: its fields are checked by hand (checkObjectStoreFields).
 * Returns problems.
 */
export async function validateSchema(obj) {
  const id = objId(obj);
  if (obj.apiVersion === "barmancloud.cnpg.io/v1" && obj.kind === "ObjectStore") return checkObjectStoreFields(obj);
  const mod = modelModule(obj.apiVersion, obj.kind);
  if (!mod) return [`${id}: apiVersion/kind: no schema known for ${obj.apiVersion} ${obj.kind}`];
  let Model;
  try {
    Model = (await import(mod))[obj.kind];
  } catch {
    Model = undefined;
  }
  if (typeof Model !== "function") return [`${id}: apiVersion/kind: no schema known for ${obj.apiVersion} ${obj.kind}`];
  try {
    new Model(obj).validate();
  } catch (e) {
    return [`${id}: schema: ${e.message.replace(/\bdata\//g, "").replace(/\n/g, "; ")}`];
  }
  return [];
}

// The fields of the Barman Cloud plugin's ObjectStore (barmancloud.cnpg.io/v1) that these
// manifests may use, with their types, written from the plugin's API reference: no npm package
// carries the CRD's schema, so this stands in for it and is stricter than a schema (unknown
// fields are refused, so a misspelt one does not pass unnoticed).
const SECRET_KEY_REF = { name: "string", key: "string" };
const OBJECT_STORE_FIELDS = {
  spec: {
    retentionPolicy: "string",
    configuration: {
      destinationPath: "string",
      endpointURL: "string",
      serverName: "string",
      endpointCA: SECRET_KEY_REF,
      s3Credentials: { accessKeyId: SECRET_KEY_REF, secretAccessKey: SECRET_KEY_REF, region: SECRET_KEY_REF, sessionToken: SECRET_KEY_REF, inheritFromIAMRole: "boolean" },
      azureCredentials: { connectionString: SECRET_KEY_REF, storageAccount: SECRET_KEY_REF, storageKey: SECRET_KEY_REF, storageSasToken: SECRET_KEY_REF, inheritFromAzureAD: "boolean", useDefaultAzureCredentials: "boolean" },
      googleCredentials: { applicationCredentials: SECRET_KEY_REF, gkeEnvironment: "boolean" },
      wal: { compression: "string", encryption: "string", maxParallel: "integer", archiveAdditionalCommandArgs: "string[]", restoreAdditionalCommandArgs: "string[]" },
      data: { compression: "string", encryption: "string", immediateCheckpoint: "boolean", jobs: "integer", additionalCommandArgs: "string[]" },
      tags: "object",
      historyTags: "object",
    },
    instanceSidecarConfiguration: "object",
  },
};
const BARMAN_COMPRESSION = ["bzip2", "gzip", "lz4", "snappy", "xz", "zstd"];

function fieldsProblems(where, value, shape) {
  if (shape === "string") return typeof value === "string" ? [] : [`${where}: must be a string`];
  if (shape === "boolean") return typeof value === "boolean" ? [] : [`${where}: must be a boolean`];
  if (shape === "integer") return Number.isInteger(value) ? [] : [`${where}: must be an integer`];
  if (shape === "string[]") return Array.isArray(value) && value.every((v) => typeof v === "string") ? [] : [`${where}: must be a list of strings`];
  if (shape === "object") return value && typeof value === "object" && !Array.isArray(value) ? [] : [`${where}: must be an object`];
  if (!value || typeof value !== "object" || Array.isArray(value)) return [`${where}: must be an object`];
  const out = [];
  for (const [k, v] of Object.entries(value)) {
    if (!(k in shape)) out.push(`${where}.${k}: unknown field`);
    else out.push(...fieldsProblems(`${where}.${k}`, v, shape[k]));
  }
  return out;
}

/**
 * The hand-written stand-in for the ObjectStore's schema: known fields of the right types, a
 * destinationPath with a scheme the plugin writes to, exactly one kind of credentials, a
 * compression it knows and a retention policy it can parse.
 */
export function checkObjectStoreFields(o) {
  const id = objId(o);
  const problems = fieldsProblems(`${id}: (hand-written ObjectStore fields)`, { spec: o.spec }, OBJECT_STORE_FIELDS);
  const c = o.spec?.configuration || {};
  if (!/^(s3|gs|https?):\/\/[^/]+\/?/.test(c.destinationPath || "")) problems.push(`${id}: spec.configuration.destinationPath: ${c.destinationPath} is not an s3://, gs:// or https:// location`);
  const creds = ["s3Credentials", "azureCredentials", "googleCredentials"].filter((k) => c[k]);
  if (creds.length !== 1) problems.push(`${id}: spec.configuration: exactly one of s3Credentials, azureCredentials, googleCredentials, got ${creds.length}`);
  for (const part of ["wal", "data"]) {
    const comp = c[part]?.compression;
    if (comp != null && !BARMAN_COMPRESSION.includes(comp)) problems.push(`${id}: spec.configuration.${part}.compression: ${comp} is not one of ${BARMAN_COMPRESSION.join(", ")}`);
  }
  const r = o.spec?.retentionPolicy;
  if (r != null && !/^[1-9][0-9]*[dwm]$/.test(r)) problems.push(`${id}: spec.retentionPolicy: ${r} is not <n>d, <n>w or <n>m`);
  return problems;
}

/* ------------------------------------------------------------------------------------------ */
/* Helpers                                                                                    */
/* ------------------------------------------------------------------------------------------ */

export function objId(o) {
  return `${o?.kind ?? "?"}/${o?.metadata?.name ?? "?"}`;
}

export const WORKLOAD_KINDS = new Set(["Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"]);

/** The pod template of a workload, or null. */
export function podTemplate(o) {
  if (o.kind === "CronJob") return o.spec?.jobTemplate?.spec?.template ?? null;
  if (WORKLOAD_KINDS.has(o.kind)) return o.spec?.template ?? null;
  return null;
}

/** Does a label selector (matchLabels / matchExpressions) select these labels? {} selects all. */
export function selects(selector, labels) {
  if (selector == null) return false;
  labels = labels || {};
  for (const [k, v] of Object.entries(selector.matchLabels || {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions || []) {
    const has = Object.prototype.hasOwnProperty.call(labels, e.key);
    if (e.operator === "In" && !(has && e.values.includes(labels[e.key]))) return false;
    if (e.operator === "NotIn" && has && e.values.includes(labels[e.key])) return false;
    if (e.operator === "Exists" && !has) return false;
    if (e.operator === "DoesNotExist" && has) return false;
  }
  return true;
}

const CPU_RE = /^([0-9.]+)(m?)$/;
const MEM_RE = /^([0-9.]+)(Ki|Mi|Gi|Ti|k|M|G|T)?$/;
const MEM_MULT = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, k: 1e3, M: 1e6, G: 1e9, T: 1e12 };

/** A resource quantity as a number (cores or bytes), or NaN. */
export function quantity(resource, q) {
  const s = String(q);
  if (resource === "cpu") {
    const m = CPU_RE.exec(s);
    return m ? Number(m[1]) / (m[2] ? 1000 : 1) : NaN;
  }
  const m = MEM_RE.exec(s);
  return m ? Number(m[1]) * (m[2] ? MEM_MULT[m[2]] : 1) : NaN;
}

export const RECOMMENDED_LABELS = [
  "app.kubernetes.io/name",
  "app.kubernetes.io/instance",
  "app.kubernetes.io/component",
  "app.kubernetes.io/part-of",
  "app.kubernetes.io/managed-by",
];

/* ------------------------------------------------------------------------------------------ */
/* Policy: labels                                                                             */
/* ------------------------------------------------------------------------------------------ */

/** Kubernetes recommended labels on every object and every pod template, part-of cartshard. */
export function checkLabels(objs) {
  const problems = [];
  const need = (where, labels, keys) => {
    for (const k of keys) {
      if (!labels?.[k]) problems.push(`${where}: labels: missing ${k}`);
    }
    if (labels?.["app.kubernetes.io/part-of"] && labels["app.kubernetes.io/part-of"] !== "cartshard")
      problems.push(`${where}: labels: app.kubernetes.io/part-of is "${labels["app.kubernetes.io/part-of"]}", expected "cartshard"`);
  };
  for (const o of objs) {
    const id = objId(o);
    need(id, o.metadata?.labels, RECOMMENDED_LABELS);
    const t = podTemplate(o);
    if (t) {
      need(`${id}: spec.template`, t.metadata?.labels, RECOMMENDED_LABELS);
      if (o.spec?.selector && !selects(o.spec.selector, t.metadata?.labels))
        problems.push(`${id}: spec.selector does not select the pod template's labels`);
    }
    if (o.kind === "Cluster" && o.apiVersion === "postgresql.cnpg.io/v1")
      need(`${id}: spec.inheritedMetadata`, o.spec?.inheritedMetadata?.labels, RECOMMENDED_LABELS.slice(0, 4));
  }
  return problems;
}

/* ------------------------------------------------------------------------------------------ */
/* Policy: containers                                                                         */
/* ------------------------------------------------------------------------------------------ */

/**
 * Every container: resource requests and limits for cpu and memory (requests <= limits), a
 * non-root, read-only, no-escalation, no-capability, seccomp-confined security context; and
 * where it serves (it declares ports) a liveness and a readiness probe. Exempt from probes:
 * init containers (the API refuses probes on them: they run to completion, like `cart-store
 * migrate`) and the containers of Jobs and CronJobs (none are rendered today).
 */
export function checkContainers(objs) {
  const problems = [];
  for (const o of objs) {
    const t = podTemplate(o);
    if (!t) continue;
    const spec = t.spec || {};
    const id = objId(o);
    const psc = spec.securityContext || {};
    const runsToCompletion = o.kind === "Job" || o.kind === "CronJob";
    if (spec.automountServiceAccountToken !== false)
      problems.push(`${id}: spec.template.spec.automountServiceAccountToken: must be false (no pod here calls the API)`);
    if (spec.enableServiceLinks !== false)
      problems.push(`${id}: spec.template.spec.enableServiceLinks: must be false (service links add *_PORT variables beside the settings)`);
    const groups = [
      ["initContainers", spec.initContainers || [], true],
      ["containers", spec.containers || [], false],
    ];
    for (const [field, list, isInit] of groups) {
      for (const c of list) {
        const where = `${id}: ${field}[${c.name}]`;
        // resources
        for (const kind of ["requests", "limits"]) {
          for (const r of ["cpu", "memory"]) {
            const q = c.resources?.[kind]?.[r];
            if (q == null) problems.push(`${where}.resources.${kind}.${r}: missing`);
            else if (Number.isNaN(quantity(r, q))) problems.push(`${where}.resources.${kind}.${r}: not a quantity: ${q}`);
          }
        }
        for (const r of ["cpu", "memory"]) {
          const req = quantity(r, c.resources?.requests?.[r]);
          const lim = quantity(r, c.resources?.limits?.[r]);
          if (req > lim) problems.push(`${where}.resources: requests.${r} (${c.resources.requests[r]}) exceeds limits.${r} (${c.resources.limits[r]})`);
        }
        // security context: container over pod for the fields both have
        const sc = c.securityContext || {};
        const runAsNonRoot = sc.runAsNonRoot ?? psc.runAsNonRoot;
        const runAsUser = sc.runAsUser ?? psc.runAsUser;
        const seccomp = sc.seccompProfile ?? psc.seccompProfile;
        if (runAsNonRoot !== true) problems.push(`${where}.securityContext.runAsNonRoot: must be true`);
        if (!Number.isInteger(runAsUser) || runAsUser <= 0) problems.push(`${where}.securityContext.runAsUser: must be a non-zero uid, is ${runAsUser}`);
        if (sc.readOnlyRootFilesystem !== true) problems.push(`${where}.securityContext.readOnlyRootFilesystem: must be true`);
        if (sc.allowPrivilegeEscalation !== false) problems.push(`${where}.securityContext.allowPrivilegeEscalation: must be false`);
        if (sc.privileged === true) problems.push(`${where}.securityContext.privileged: must not be true`);
        if (!(sc.capabilities?.drop || []).includes("ALL")) problems.push(`${where}.securityContext.capabilities.drop: must include ALL`);
        if ((sc.capabilities?.add || []).length > 0) problems.push(`${where}.securityContext.capabilities.add: must be empty`);
        if (!["RuntimeDefault", "Localhost"].includes(seccomp?.type)) problems.push(`${where}.securityContext.seccompProfile.type: must be RuntimeDefault`);
        // probes
        const serves = (c.ports || []).length > 0;
        if (isInit) {
          if (c.livenessProbe || c.readinessProbe || c.startupProbe) {
            if (c.restartPolicy !== "Always") problems.push(`${where}: an init container cannot have probes`);
          }
        } else if (serves && !runsToCompletion) {
          if (!c.livenessProbe) problems.push(`${where}.livenessProbe: missing (it serves on ports ${c.ports.map((p) => p.containerPort).join(", ")})`);
          if (!c.readinessProbe) problems.push(`${where}.readinessProbe: missing (it serves on ports ${c.ports.map((p) => p.containerPort).join(", ")})`);
          for (const p of ["livenessProbe", "readinessProbe", "startupProbe"]) {
            const port = c[p]?.httpGet?.port ?? c[p]?.tcpSocket?.port;
            if (port != null && !(c.ports || []).some((cp) => cp.name === port || cp.containerPort === port))
              problems.push(`${where}.${p}: port ${port} is not one of the container's ports`);
          }
        } else if (!serves && !runsToCompletion) {
          problems.push(`${where}.ports: a long-running container must declare what it serves (its probes check it)`);
        }
        // a shell wrapper hands the container over to its program, or SIGTERM stops at the shell
        if (!isInit && !runsToCompletion) problems.push(...checkShellExec(where, c));
        // images
        problems.push(...checkImage(where, c.image));
      }
    }
  }
  return problems;
}

/**
 * A long-running container started through `sh -c <script>` must `exec` its program at the
 * start of a statement (not inside a pipeline): otherwise the shell stays the main process,
 * SIGTERM stops there, and the program is killed at the end of the grace period.
 */
export function checkShellExec(where, c) {
  const argv = [...(c.command || []), ...(c.args || [])];
  const shell = argv.findIndex((a) => /(^|\/)(ba|da|a)?sh$/.test(a));
  if (shell < 0 || argv[shell + 1] !== "-c") return [];
  const script = String(argv[shell + 2] ?? "");
  const ok = [...script.matchAll(/\bexec\s/g)].some((m) => {
    const before = script.slice(0, m.index).replace(/[ \t]+$/, ""); // what precedes, newlines kept
    if (before === "" || /(;|&&)$/.test(before)) return true; // the first statement, or after ; and &&
    if (!before.endsWith("\n")) return false; // inside a command: "| exec", "x exec"
    return !/[|\\]$/.test(before.replace(/\s+$/, "")); // a new line, unless the last one goes on (| or \)
  });
  return ok ? [] : [`${where}.command: sh -c without an exec of the program (SIGTERM would stop at the shell)`];
}

/** An image reference with an explicit tag or digest, and not "latest". */
export function checkImage(where, image) {
  if (typeof image !== "string" || image === "") return [`${where}.image: missing`];
  if (/@sha256:[0-9a-f]{64}$/.test(image)) return [];
  const last = image.split("/").pop();
  const colon = last.lastIndexOf(":");
  if (colon < 0) return [`${where}.image: ${image} has no tag (that means latest)`];
  const tag = last.slice(colon + 1);
  if (tag === "latest" || tag === "") return [`${where}.image: ${image} uses the tag "${tag}"`];
  return [];
}

/* ------------------------------------------------------------------------------------------ */
/* Policy: availability                                                                       */
/* ------------------------------------------------------------------------------------------ */

/**
 * Every Deployment and StatefulSet: a PodDisruptionBudget whose selector selects its pods,
 * topologySpreadConstraints whose labelSelector selects its pods; an HPA target has no fixed
 * replicas. Every CloudNativePG Cluster: 3 instances, its PDBs on, resources, a spread.
 */
export function checkAvailability(objs) {
  const problems = [];
  const pdbs = objs.filter((o) => o.kind === "PodDisruptionBudget");
  const hpas = objs.filter((o) => o.kind === "HorizontalPodAutoscaler");
  for (const o of objs) {
    const id = objId(o);
    if (o.kind === "Deployment" || o.kind === "StatefulSet") {
      const labels = o.spec?.template?.metadata?.labels || {};
      const mine = pdbs.filter((p) => selects(p.spec?.selector, labels));
      if (mine.length === 0) problems.push(`${id}: no PodDisruptionBudget selects its pods`);
      if (mine.length > 1) problems.push(`${id}: ${mine.length} PodDisruptionBudgets select its pods (${mine.map(objId).join(", ")}): eviction fails`);
      const tsc = o.spec?.template?.spec?.topologySpreadConstraints || [];
      if (tsc.length === 0) problems.push(`${id}: spec.template.spec.topologySpreadConstraints: missing`);
      tsc.forEach((c, i) => {
        if (!selects(c.labelSelector, labels))
          problems.push(`${id}: spec.template.spec.topologySpreadConstraints[${i}].labelSelector does not select its own pods`);
      });
      const hpa = hpas.find((h) => h.spec?.scaleTargetRef?.kind === o.kind && h.spec?.scaleTargetRef?.name === o.metadata.name);
      if (hpa && o.spec.replicas != null)
        problems.push(`${id}: spec.replicas: set although ${objId(hpa)} scales it (every apply would reset the count)`);
    }
    if (o.kind === "HorizontalPodAutoscaler") {
      if (o.apiVersion !== "autoscaling/v2") problems.push(`${id}: apiVersion: ${o.apiVersion}, expected autoscaling/v2`);
      const ref = o.spec?.scaleTargetRef || {};
      if (!objs.some((t) => t.kind === ref.kind && t.metadata?.name === ref.name))
        problems.push(`${id}: spec.scaleTargetRef: ${ref.kind}/${ref.name} is not in the render`);
      if (!(o.spec?.metrics || []).some((m) => m.type === "Resource" && m.resource?.name === "cpu"))
        problems.push(`${id}: spec.metrics: no CPU metric`);
      if (!(o.spec?.minReplicas >= 1 && o.spec?.maxReplicas >= o.spec?.minReplicas))
        problems.push(`${id}: spec.minReplicas/maxReplicas: ${o.spec?.minReplicas}/${o.spec?.maxReplicas}`);
    }
    if (o.kind === "Cluster" && o.apiVersion === "postgresql.cnpg.io/v1") {
      const s = o.spec || {};
      if (s.instances !== 3) problems.push(`${id}: spec.instances: ${s.instances}, expected 3`);
      if (s.enablePDB === false) problems.push(`${id}: spec.enablePDB: must not be false`);
      for (const kind of ["requests", "limits"])
        for (const r of ["cpu", "memory"]) if (s.resources?.[kind]?.[r] == null) problems.push(`${id}: spec.resources.${kind}.${r}: missing`);
      const spread = (s.topologySpreadConstraints || []).length > 0 || s.affinity?.enablePodAntiAffinity === true;
      if (!spread) problems.push(`${id}: spec.topologySpreadConstraints/affinity: the instances are not spread`);
      (s.topologySpreadConstraints || []).forEach((c, i) => {
        if (!selects(c.labelSelector, { "cnpg.io/cluster": o.metadata.name, ...(s.inheritedMetadata?.labels || {}) }))
          problems.push(`${id}: spec.topologySpreadConstraints[${i}].labelSelector does not select the cluster's pods`);
      });
      problems.push(...checkImage(`${id}: spec.imageName`, s.imageName));
    }
  }
  return problems;
}

/* ------------------------------------------------------------------------------------------ */
/* Policy: references and configuration                                                       */
/* ------------------------------------------------------------------------------------------ */

function findObj(objs, kind, name) {
  return objs.find((o) => o.kind === kind && o.metadata?.name === name);
}

function secretKeys(s) {
  return new Set([...Object.keys(s?.data || {}), ...Object.keys(s?.stringData || {})]);
}

function secretValue(s, key) {
  if (s?.stringData && key in s.stringData) return String(s.stringData[key]);
  if (s?.data && key in s.data) return Buffer.from(String(s.data[key] ?? ""), "base64").toString("utf8");
  return undefined;
}

/**
 * Every ConfigMap and Secret a pod or a Cluster refers to exists, with the keys asked for:
 * in the render, or for Secrets in `external` (the Secrets an operator creates by hand,
 * k8s/overlays/prod/secret.example.yaml). Optional references are exempt.
 */
export function checkReferences(objs, external = []) {
  const problems = [];
  const secret = (name) => findObj(objs, "Secret", name) || findObj(external, "Secret", name) || operatorSecret(objs, name);
  for (const o of objs) {
    const id = objId(o);
    const t = podTemplate(o);
    if (t) {
      const spec = t.spec || {};
      for (const c of [...(spec.initContainers || []), ...(spec.containers || [])]) {
        const where = `${id}: container ${c.name}`;
        for (const ef of c.envFrom || []) {
          if (ef.configMapRef && !ef.configMapRef.optional && !findObj(objs, "ConfigMap", ef.configMapRef.name))
            problems.push(`${where}: envFrom configMapRef ${ef.configMapRef.name}: no such ConfigMap`);
          if (ef.secretRef && !ef.secretRef.optional && !secret(ef.secretRef.name))
            problems.push(`${where}: envFrom secretRef ${ef.secretRef.name}: no such Secret`);
        }
        for (const e of c.env || []) {
          const sk = e.valueFrom?.secretKeyRef;
          if (sk && !sk.optional) {
            const s = secret(sk.name);
            if (!s) problems.push(`${where}: env ${e.name}: secretKeyRef ${sk.name}: no such Secret`);
            else if (!secretKeys(s).has(sk.key)) problems.push(`${where}: env ${e.name}: secretKeyRef ${sk.name} has no key ${sk.key}`);
          }
          const ck = e.valueFrom?.configMapKeyRef;
          if (ck && !ck.optional) {
            const cm = findObj(objs, "ConfigMap", ck.name);
            if (!cm) problems.push(`${where}: env ${e.name}: configMapKeyRef ${ck.name}: no such ConfigMap`);
            else if (!(ck.key in (cm.data || {}))) problems.push(`${where}: env ${e.name}: configMapKeyRef ${ck.name} has no key ${ck.key}`);
          }
        }
        problems.push(...checkEnvOrder(where, c, objs));
      }
      for (const v of spec.volumes || []) {
        if (v.configMap && !v.configMap.optional && !findObj(objs, "ConfigMap", v.configMap.name))
          problems.push(`${id}: volume ${v.name}: configMap ${v.configMap.name}: no such ConfigMap`);
        if (v.secret && !v.secret.optional && !secret(v.secret.secretName))
          problems.push(`${id}: volume ${v.name}: secret ${v.secret.secretName}: no such Secret`);
        for (const src of v.projected?.sources || []) {
          const ref = src.secret || src.configMap;
          if (!ref || ref.optional) continue;
          const found = src.secret ? secret(ref.name) : findObj(objs, "ConfigMap", ref.name);
          if (!found) problems.push(`${id}: volume ${v.name}: projected ${src.secret ? "secret" : "configMap"} ${ref.name}: no such ${src.secret ? "Secret" : "ConfigMap"}`);
          else
            for (const it of ref.items || [])
              if (!(src.secret ? secretKeys(found) : new Set(Object.keys(found.data || {}))).has(it.key))
                problems.push(`${id}: volume ${v.name}: projected ${ref.name} has no key ${it.key}`);
        }
      }
    }
    if (o.kind === "Cluster" && o.apiVersion === "postgresql.cnpg.io/v1") {
      const init = o.spec?.bootstrap?.initdb;
      if (init?.secret?.name) {
        const s = secret(init.secret.name);
        if (!s) problems.push(`${id}: spec.bootstrap.initdb.secret ${init.secret.name}: no such Secret`);
        else {
          if (s.type !== "kubernetes.io/basic-auth") problems.push(`${id}: spec.bootstrap.initdb.secret ${init.secret.name}: type must be kubernetes.io/basic-auth`);
          if (secretValue(s, "username") !== init.owner)
            problems.push(`${id}: spec.bootstrap.initdb.secret ${init.secret.name}: username must be the owner "${init.owner}"`);
          if (!secretKeys(s).has("password")) problems.push(`${id}: spec.bootstrap.initdb.secret ${init.secret.name}: no password`);
        }
      }
      for (const r of o.spec?.managed?.roles || []) {
        const name = r.passwordSecret?.name;
        if (!name) continue;
        const s = secret(name);
        if (!s) problems.push(`${id}: spec.managed.roles[${r.name}].passwordSecret ${name}: no such Secret`);
        else {
          if (s.type !== "kubernetes.io/basic-auth") problems.push(`${id}: spec.managed.roles[${r.name}].passwordSecret ${name}: type must be kubernetes.io/basic-auth`);
          if (secretValue(s, "username") !== r.name) problems.push(`${id}: spec.managed.roles[${r.name}].passwordSecret ${name}: username must be the role "${r.name}"`);
        }
      }
      for (const pl of o.spec?.plugins || []) {
        const store = pl.parameters?.barmanObjectName;
        if (store && !objs.some((x) => x.kind === "ObjectStore" && x.metadata?.name === store))
          problems.push(`${id}: spec.plugins[${pl.name}].parameters.barmanObjectName: no ObjectStore ${store} in the render`);
      }
    }
    if (o.kind === "ObjectStore") {
      const c = o.spec?.configuration || {};
      for (const creds of [c.s3Credentials, c.azureCredentials, c.googleCredentials]) {
        for (const [field, ref] of Object.entries(creds || {})) {
          if (!ref || typeof ref !== "object") continue;
          const s = secret(ref.name);
          if (!s) problems.push(`${id}: spec.configuration credentials ${field}: Secret ${ref.name}: no such Secret`);
          else if (!secretKeys(s).has(ref.key)) problems.push(`${id}: spec.configuration credentials ${field}: Secret ${ref.name} has no key ${ref.key}`);
        }
      }
    }
  }
  return problems;
}

/**
 * The Secrets the CloudNativePG operator makes for each Cluster of the render (its CA, the
 * server's certificate, the replication client's), as a stand-in object with their keys; null
 * for any other name.
 */
export function operatorSecret(objs, name) {
  for (const c of objs.filter((o) => o.kind === "Cluster" && o.apiVersion === "postgresql.cnpg.io/v1")) {
    const n = c.metadata?.name;
    const keys = {
      [`${n}-ca`]: ["ca.crt", "ca.key"],
      [`${n}-server`]: ["tls.crt", "tls.key"],
      [`${n}-replication`]: ["tls.crt", "tls.key"],
    }[name];
    if (keys) return { kind: "Secret", metadata: { name }, data: Object.fromEntries(keys.map((k) => [k, ""])) };
  }
  return null;
}

/** $(VAR) in an env value is expanded only from variables defined before it (envFrom, then env above). */
function checkEnvOrder(where, c, objs) {
  const problems = [];
  const known = new Set();
  for (const ef of c.envFrom || []) {
    const cm = ef.configMapRef && findObj(objs, "ConfigMap", ef.configMapRef.name);
    for (const k of Object.keys(cm?.data || {})) known.add((ef.prefix || "") + k);
  }
  for (const e of c.env || []) {
    for (const m of String(e.value ?? "").matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g)) {
      if (!known.has(m[1])) problems.push(`${where}: env ${e.name}: refers to $(${m[1]}), which is not defined above it`);
    }
    known.add(e.name);
  }
  for (const field of ["command", "args"]) {
    for (const a of c[field] || []) {
      for (const m of String(a).matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g)) {
        if (!known.has(m[1])) problems.push(`${where}: ${field}: refers to $(${m[1]}), which the container does not define`);
      }
    }
  }
  return problems;
}

/** A container's environment as Kubernetes builds it (envFrom ConfigMaps, then env values; secrets as "<secret>"). */
export function effectiveEnv(c, objs) {
  const env = {};
  for (const ef of c.envFrom || []) {
    const cm = ef.configMapRef && findObj(objs, "ConfigMap", ef.configMapRef.name);
    for (const [k, v] of Object.entries(cm?.data || {})) env[(ef.prefix || "") + k] = String(v);
  }
  for (const e of c.env || []) {
    if (e.value != null) env[e.name] = String(e.value).replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (all, n) => (n in env ? env[n] : all));
    else if (e.valueFrom?.configMapKeyRef) {
      const cm = findObj(objs, "ConfigMap", e.valueFrom.configMapKeyRef.name);
      env[e.name] = String(cm?.data?.[e.valueFrom.configMapKeyRef.key] ?? "");
    } else env[e.name] = `<${e.name}>`;
  }
  return env;
}

/** Every container of the workloads, with its object: [{o, c, init}]. */
export function allContainers(objs) {
  const out = [];
  for (const o of objs) {
    const t = podTemplate(o);
    if (!t) continue;
    for (const c of t.spec?.initContainers || []) out.push({ o, c, init: true });
    for (const c of t.spec?.containers || []) out.push({ o, c, init: false });
  }
  return out;
}

/** The cartshard containers: the images cartshard/cart-gateway, cartshard/cart-store and cartshard/cart-stats. */
export function appContainers(objs) {
  return allContainers(objs).filter(({ c }) => /(^|\/)cartshard\/cart-(gateway|store|stats)(:|@|$)/.test(c.image || ""));
}

/**
 * The shards: every cartshard container gets the same SHARD_DSNS (the partition -> shard map
 * depends on the order), each DSN names a different host, that host is a PostgreSQL of the
 * render (dev: a Service in front of a PostgreSQL StatefulSet; prod: the -rw Service of a
 * CloudNativePG Cluster), and passwords come from Secrets. CART_PARTITIONS is the same
 * everywhere and at least the number of shards.
 */
export function checkShards(objs) {
  const problems = [];
  const apps = appContainers(objs);
  if (apps.length === 0) return ["no cartshard containers in the render"];
  const seen = new Map();
  const parts = new Set();
  for (const { o, c } of apps) {
    const e = effectiveEnv(c, objs);
    const id = `${objId(o)}: container ${c.name}`;
    if (!e.SHARD_DSNS) problems.push(`${id}: env SHARD_DSNS: missing`);
    else seen.set(id, e.SHARD_DSNS);
    parts.add(e.CART_PARTITIONS ?? "(unset: 32)");
  }
  const values = [...new Set(seen.values())];
  if (values.length > 1) problems.push(`SHARD_DSNS differs between containers: ${[...seen].map(([k, v]) => `${k} = ${v}`).join(" | ")}`);
  if (parts.size > 1) problems.push(`CART_PARTITIONS differs between containers: ${[...parts].join(", ")}`);
  if (values.length === 0) return problems;
  const dsns = values[0].split(",").map((s) => s.trim());
  const partitions = Number([...parts][0] === "(unset: 32)" ? 32 : [...parts][0]);
  if (!(partitions >= dsns.length)) problems.push(`CART_PARTITIONS (${partitions}) is less than the number of shards (${dsns.length})`);
  const hosts = new Set();
  dsns.forEach((dsn, i) => {
    const host = /(?:^|\s)host=(\S+)/.exec(dsn)?.[1] ?? /^postgres(?:ql)?:\/\/(?:[^@/]*@)?([^:/?]+)/.exec(dsn)?.[1];
    const pw = /(?:^|\s)password=(\S+)/.exec(dsn)?.[1];
    if (pw && !pw.startsWith("$(") && !pw.startsWith("<")) problems.push(`SHARD_DSNS entry ${i}: a literal password in a manifest; take it from a Secret`);
    if (!host) {
      problems.push(`SHARD_DSNS entry ${i}: no host`);
      return;
    }
    if (hosts.has(host)) problems.push(`SHARD_DSNS entry ${i}: host ${host} appears twice (two shards on one database)`);
    hosts.add(host);
    // CloudNativePG's read-write Service of a Cluster in the render ...
    const cluster = objs.find((o) => o.kind === "Cluster" && o.apiVersion === "postgresql.cnpg.io/v1" && `${o.metadata.name}-rw` === host);
    if (cluster) return;
    // ... or a Service of ours in front of a PostgreSQL StatefulSet.
    const svc = findObj(objs, "Service", host);
    if (!svc) {
      problems.push(`SHARD_DSNS entry ${i}: host ${host}: no Service and no CloudNativePG Cluster ${host.replace(/-rw$/, "")} in the render`);
      return;
    }
    const sts = objs.find((o) => o.kind === "StatefulSet" && selects({ matchLabels: svc.spec?.selector || {} }, o.spec?.template?.metadata?.labels));
    if (!sts) problems.push(`Service/${host}: selects no StatefulSet's pods`);
    else if (!(sts.spec?.template?.spec?.containers || []).some((c) => /(^|\/)postgres(ql)?:/.test(c.image || "")))
      problems.push(`SHARD_DSNS entry ${i}: ${objId(sts)} behind Service/${host} runs no PostgreSQL image`);
  });
  return problems;
}

/**
 * NATS: the StatefulSet has 3 replicas, Parallel pod management and volume claims; its config
 * enables JetStream with a file store on the volume, sync_interval, and routes to each of the
 * replicas by the headless Service's names; the image is nats 2.10 or newer. The streams get 3
 * replicas: the container that runs `cart-store migrate` (it creates them) and every cartshard
 * container see CART_STREAM_REPLICAS=3, no more than there are servers.
 */
export function checkNats(objs) {
  const problems = [];
  const sts = findObj(objs, "StatefulSet", "nats");
  if (!sts) return ["StatefulSet/nats: missing"];
  const id = objId(sts);
  const replicas = sts.spec?.replicas;
  if (replicas !== 3) problems.push(`${id}: spec.replicas: ${replicas}, expected 3`);
  if (sts.spec?.podManagementPolicy !== "Parallel") problems.push(`${id}: spec.podManagementPolicy: must be Parallel (a JetStream server needs its peers to become healthy)`);
  const vct = sts.spec?.volumeClaimTemplates || [];
  if (vct.length === 0) problems.push(`${id}: spec.volumeClaimTemplates: missing (JetStream's file store needs a persistent volume)`);
  const c = (sts.spec?.template?.spec?.containers || []).find((x) => /(^|\/)nats:/.test(x.image || ""));
  if (!c) return [...problems, `${id}: no container runs the nats image`];
  const ver = /:(\d+)\.(\d+)/.exec(c.image);
  if (!ver || Number(ver[1]) < 2 || (Number(ver[1]) === 2 && Number(ver[2]) < 10)) problems.push(`${id}: container ${c.name}.image: ${c.image}, expected nats 2.10 or newer`);
  const headless = findObj(objs, "Service", sts.spec?.serviceName);
  if (!headless) problems.push(`${id}: spec.serviceName: Service ${sts.spec?.serviceName} missing`);
  else {
    if (headless.spec?.clusterIP !== "None") problems.push(`Service/${headless.metadata.name}: spec.clusterIP: must be None (headless: stable names for the routes)`);
    if (headless.spec?.publishNotReadyAddresses !== true) problems.push(`Service/${headless.metadata.name}: spec.publishNotReadyAddresses: must be true (routes before readiness)`);
  }
  const confVol = (sts.spec?.template?.spec?.volumes || []).find((v) => v.configMap);
  const cm = confVol && findObj(objs, "ConfigMap", confVol.configMap.name);
  const text = cm && Object.values(cm.data || {}).join("\n");
  if (!text) problems.push(`${id}: no ConfigMap volume with the server configuration`);
  else {
    const conf = text.replace(/#.*$/gm, "");
    const js = /jetstream\s*\{([^}]*)\}/.exec(conf)?.[1];
    if (js == null) problems.push(`ConfigMap/${cm.metadata.name}: no jetstream block`);
    else {
      const storeDir = /store_dir:\s*"?([^\s"]+)/.exec(js)?.[1];
      const mounts = (c.volumeMounts || []).filter((m) => vct.some((v) => v.metadata?.name === m.name)).map((m) => m.mountPath);
      if (!storeDir || !mounts.some((m) => storeDir === m || storeDir.startsWith(m.replace(/\/?$/, "/"))))
        problems.push(`ConfigMap/${cm.metadata.name}: jetstream.store_dir ${storeDir} is not on the claimed volume (${mounts.join(", ") || "none mounted"})`);
      if (!/sync_interval\s*:/.test(js)) problems.push(`ConfigMap/${cm.metadata.name}: jetstream.sync_interval: not set`);
    }
    const routes = /routes\s*[:=]?\s*\[([^\]]*)\]/.exec(conf)?.[1];
    const names = routes ? [...routes.matchAll(/nats:\/\/([^:\s,]+):6222/g)].map((m) => m[1]) : [];
    for (let i = 0; i < (replicas || 0); i++) {
      const want = `${sts.metadata.name}-${i}.${sts.spec.serviceName}`;
      if (!names.includes(want)) problems.push(`ConfigMap/${cm.metadata.name}: cluster.routes: no route to ${want}:6222`);
    }
    if (!/server_name\s*:/.test(conf)) problems.push(`ConfigMap/${cm.metadata.name}: server_name: not set (JetStream clustering needs unique names)`);
  }
  const apps = appContainers(objs);
  const migrators = apps.filter(({ c: x }) => [...(x.command || []), ...(x.args || [])].includes("migrate"));
  if (migrators.length === 0) problems.push("no container runs `cart-store migrate` (it creates the streams)");
  for (const { o, c: x } of apps) {
    const r = effectiveEnv(x, objs).CART_STREAM_REPLICAS;
    if (r !== "3") problems.push(`${objId(o)}: container ${x.name}: CART_STREAM_REPLICAS is ${r ?? "unset (1)"}, expected 3`);
    else if (Number(r) > (replicas || 0)) problems.push(`${objId(o)}: container ${x.name}: CART_STREAM_REPLICAS ${r} exceeds the ${replicas} NATS servers`);
  }
  return problems;
}

/** Secrets that ship with the repository hold placeholders only. */
export function checkSecretsFake(secrets, markers) {
  const problems = [];
  for (const s of secrets.filter((o) => o.kind === "Secret")) {
    for (const k of secretKeys(s)) {
      const v = secretValue(s, k);
      if (k === "username") continue;
      if (v !== "" && !markers.some((m) => v.includes(m)))
        problems.push(`${objId(s)}: key ${k}: does not look like a placeholder (expected one of: ${markers.join(", ")})`);
    }
  }
  return problems;
}

/* ------------------------------------------------------------------------------------------ */
/* NetworkPolicy evaluation                                                                   */
/* ------------------------------------------------------------------------------------------ */

/**
 * The pods an overlay makes: one entry per workload template and per CloudNativePG Cluster
 * (its pods carry cnpg.io/cluster, cnpg.io/podRole and the inherited labels).
 * Each: {id, ns, nsLabels, labels, ports: {name: number}}.
 */
export function podsOf(objs) {
  const nsLabels = {};
  for (const n of objs.filter((o) => o.kind === "Namespace")) nsLabels[n.metadata.name] = { "kubernetes.io/metadata.name": n.metadata.name, ...(n.metadata.labels || {}) };
  const labelsOfNs = (ns) => nsLabels[ns] || { "kubernetes.io/metadata.name": ns };
  const pods = [];
  for (const o of objs) {
    const t = podTemplate(o);
    const ns = o.metadata?.namespace || "default";
    if (t) {
      const ports = {};
      for (const c of t.spec?.containers || []) for (const p of c.ports || []) if (p.name) ports[p.name] = p.containerPort;
      pods.push({ id: objId(o), ns, nsLabels: labelsOfNs(ns), labels: t.metadata?.labels || {}, ports });
    }
    if (o.kind === "Cluster" && o.apiVersion === "postgresql.cnpg.io/v1") {
      pods.push({
        id: objId(o),
        ns,
        nsLabels: labelsOfNs(ns),
        labels: { ...(o.spec?.inheritedMetadata?.labels || {}), "cnpg.io/cluster": o.metadata.name, "cnpg.io/podRole": "instance" },
        ports: { postgresql: 5432, metrics: 9187, status: 8000 },
      });
    }
  }
  return pods;
}

function policyTypes(p) {
  if (p.spec?.policyTypes) return p.spec.policyTypes;
  return p.spec?.egress ? ["Ingress", "Egress"] : ["Ingress"];
}

function ipInCidr(ip, cidr) {
  const toInt = (s) => s.split(".").reduce((a, b) => a * 256 + Number(b), 0);
  const [net, bits] = cidr.split("/");
  if (!ip || !/^\d+\.\d+\.\d+\.\d+$/.test(ip) || !/^\d+\.\d+\.\d+\.\d+$/.test(net)) return false;
  const size = 2 ** (32 - Number(bits));
  return Math.floor(toInt(ip) / size) === Math.floor(toInt(net) / size);
}

function peerMatches(peer, policyNs, ep) {
  if (peer.ipBlock) {
    if (!ep.ip || !ipInCidr(ep.ip, peer.ipBlock.cidr)) return false;
    return !(peer.ipBlock.except || []).some((c) => ipInCidr(ep.ip, c));
  }
  if (!ep.ns) return false; // an address outside the cluster matches only ipBlocks
  if (peer.namespaceSelector) {
    if (!selects(peer.namespaceSelector, ep.nsLabels)) return false;
  } else if (ep.ns !== policyNs) return false;
  if (peer.podSelector) return selects(peer.podSelector, ep.labels);
  return true;
}

function portMatches(rulePorts, port, proto, ep) {
  if (!rulePorts || rulePorts.length === 0) return true;
  return rulePorts.some((p) => {
    if ((p.protocol || "TCP") !== proto) return false;
    if (p.port == null) return true;
    const n = typeof p.port === "string" ? ep.ports?.[p.port] : p.port;
    if (n == null) return false;
    return port >= n && port <= (p.endPort ?? n);
  });
}

/** Is this direction allowed by the policies that select `self` (no policy of that type: allowed)? */
function sideAllows(policies, self, other, port, proto, type, portOwner) {
  if (!self.ns) return true; // outside the cluster: not ours to police
  const mine = policies.filter((p) => (p.metadata?.namespace || "default") === self.ns && selects(p.spec?.podSelector, self.labels) && policyTypes(p).includes(type));
  if (mine.length === 0) return true;
  const key = type === "Ingress" ? "ingress" : "egress";
  const peerKey = type === "Ingress" ? "from" : "to";
  return mine.some((p) =>
    (p.spec?.[key] || []).some((r) => {
      const peers = r[peerKey];
      const peerOk = !peers || peers.length === 0 || peers.some((peer) => peerMatches(peer, p.metadata?.namespace || "default", other));
      return peerOk && portMatches(r.ports, port, proto, portOwner);
    }),
  );
}

/** May `src` open a connection to `dst` on port/proto, given every NetworkPolicy? */
export function flowAllowed(policies, src, dst, port, proto = "TCP") {
  return sideAllows(policies, src, dst, port, proto, "Egress", dst) && sideAllows(policies, dst, src, port, proto, "Ingress", dst);
}

/** Endpoints outside the namespace that the flows name. */
export const OUTSIDE = {
  internet: { id: "a client on the internet", ip: "203.0.113.7" },
  apiServer: { id: "the Kubernetes API server", ip: "10.96.0.1" },
  dns: { id: "kube-dns", ns: "kube-system", nsLabels: { "kubernetes.io/metadata.name": "kube-system" }, labels: { "k8s-app": "kube-dns" }, ports: {} },
  nodeLocalDns: { id: "NodeLocal DNSCache (169.254.20.10)", ip: "169.254.20.10" },
  prometheus: { id: "Prometheus (namespace monitoring)", ns: "monitoring", nsLabels: { "kubernetes.io/metadata.name": "monitoring" }, labels: { "app.kubernetes.io/name": "prometheus" }, ports: {} },
  cnpgOperator: { id: "the CloudNativePG operator", ns: "cnpg-system", nsLabels: { "kubernetes.io/metadata.name": "cnpg-system" }, labels: { "app.kubernetes.io/name": "cloudnative-pg" }, ports: {} },
};

/**
 * NetworkPolicies: a default deny of both directions for the whole namespace, every pod selected
 * by a policy of its own, and exactly the flows cartshard needs: the ones in `allowed` pass,
 * the ones in `denied` are refused.
 */
export function checkNetworkPolicies(objs) {
  const problems = [];
  const policies = objs.filter((o) => o.kind === "NetworkPolicy");
  const pods = podsOf(objs);
  const deny = policies.find((p) => Object.keys(p.spec?.podSelector || { x: 1 }).length === 0 && !(p.spec?.ingress || []).length && !(p.spec?.egress || []).length);
  if (!deny) problems.push("NetworkPolicy: no default deny (podSelector {} without rules)");
  else if (!["Ingress", "Egress"].every((t) => policyTypes(deny).includes(t))) problems.push(`${objId(deny)}: spec.policyTypes: must deny both Ingress and Egress`);
  for (const pod of pods) {
    const own = policies.filter((p) => p !== deny && Object.keys(p.spec?.podSelector || {}).length > 0 && selects(p.spec.podSelector, pod.labels));
    if (own.length === 0) problems.push(`${pod.id}: no NetworkPolicy of its own selects its pods (only the namespace-wide ones)`);
  }
  const by = (pred) => pods.filter((p) => pred(p.labels));
  const name = (n) => (l) => l["app.kubernetes.io/name"] === n;
  const gw = by(name("cart-gateway"));
  const store = by(name("cart-store"));
  const stats = by(name("cart-stats"));
  const nats = by(name("nats"));
  const redis = by(name("redis"));
  const pg = by(name("postgresql"));
  const cnpg = by((l) => "cnpg.io/cluster" in l);
  for (const [what, list] of [["cart-gateway", gw], ["cart-store", store], ["cart-stats", stats], ["nats", nats], ["redis", redis], ["postgresql", pg]])
    if (list.length === 0) problems.push(`no ${what} pods in the render`);
  const want = [];
  const refuse = [];
  for (const p of pods) {
    want.push([p, OUTSIDE.dns, 53, "UDP"], [p, OUTSIDE.dns, 53, "TCP"], [p, OUTSIDE.nodeLocalDns, 53, "UDP"], [p, OUTSIDE.nodeLocalDns, 53, "TCP"]);
    if (!cnpg.includes(p)) refuse.push([p, OUTSIDE.internet, 443, "TCP"]);
  }
  for (const g of gw) want.push([OUTSIDE.internet, g, 8080]);
  for (const s of [...gw, ...store, ...stats]) {
    for (const n of nats) want.push([s, n, 4222]);
    for (const r of redis) want.push([s, r, 6379]);
    for (const d of pg) want.push([s, d, 5432]);
  }
  for (const a of nats) for (const b of nats) want.push([a, b, 6222]);
  for (const s of store) want.push([OUTSIDE.prometheus, s, 9101]);
  for (const s of stats) want.push([OUTSIDE.prometheus, s, 9201]);
  for (const n of nats) want.push([OUTSIDE.prometheus, n, 8222], [OUTSIDE.prometheus, n, 7777]);
  for (const r of redis) want.push([OUTSIDE.prometheus, r, 9121]);
  for (const a of cnpg) {
    for (const b of cnpg) want.push([a, b, 5432], [a, b, 8000]);
    want.push([OUTSIDE.cnpgOperator, a, 8000], [a, OUTSIDE.apiServer, 443]);
  }
  for (const n of nats) refuse.push([OUTSIDE.internet, n, 4222], [OUTSIDE.internet, n, 8222]);
  for (const r of redis) refuse.push([OUTSIDE.internet, r, 6379], [OUTSIDE.internet, r, 9121]);
  for (const n of nats) refuse.push([OUTSIDE.internet, n, 7777]);
  for (const s of stats) refuse.push([OUTSIDE.internet, s, 9201]);
  for (const s of stats) for (const n of nats) refuse.push([s, n, 6222]);
  for (const d of pg) refuse.push([OUTSIDE.internet, d, 5432]);
  for (const s of store) refuse.push([OUTSIDE.internet, s, 9101]);
  for (const g of gw) for (const n of nats) refuse.push([g, n, 6222]);
  for (const s of store) for (const g of gw) refuse.push([s, g, 8080]);
  for (const r of redis) for (const d of pg) refuse.push([r, d, 5432]);
  for (const n of nats) for (const d of pg) refuse.push([n, d, 5432]);
  for (const d of pg) for (const n of nats) refuse.push([d, n, 4222]);
  // Only the CloudNativePG instances talk to the API server; nothing else leaves the cluster.
  for (const p of pods) if (!cnpg.includes(p)) refuse.push([p, OUTSIDE.apiServer, 443]);
  const seen = new Set();
  for (const [src, dst, port, proto = "TCP"] of want) {
    const key = `${src.id} -> ${dst.id}:${port}/${proto}`;
    if (seen.has(key)) continue;
    seen.add(key);
    if (!flowAllowed(policies, src, dst, port, proto)) problems.push(`NetworkPolicy: ${key} is needed but not allowed`);
  }
  for (const [src, dst, port, proto = "TCP"] of refuse) {
    const key = `${src.id} -> ${dst.id}:${port}/${proto}`;
    if (seen.has(key)) continue;
    seen.add(key);
    if (flowAllowed(policies, src, dst, port, proto)) problems.push(`NetworkPolicy: ${key} is allowed but nothing needs it`);
  }
  return problems;
}

/* ------------------------------------------------------------------------------------------ */
/* Policy: probes                                                                             */
/* ------------------------------------------------------------------------------------------ */

const probeTarget = (p) => (p?.httpGet ? `httpGet ${p.httpGet.path}` : p?.tcpSocket ? "tcpSocket" : p?.exec ? "exec" : "none");

/**
 * Readiness does not cascade and liveness does not restart for another's fault: the cartshard
 * containers are ready on /readyz and alive (and started) on /healthz; NATS starts on the full
 * /healthz (current with every stream it holds) with a budget of at least 10 minutes, lives on
 * js-enabled-only and is ready on js-server-only; no probe asks another host; a sidecar
 * (any container after the first of its pod) probes only with tcpSocket or httpGet on its own
 * ports, so it cannot take its pod out of a Service for another service's state.
 */
export function checkProbes(objs) {
  const problems = [];
  for (const { o, c, init } of appContainers(objs)) {
    if (init) continue;
    const where = `${objId(o)}: container ${c.name}`;
    if (c.livenessProbe?.httpGet?.path !== "/healthz") problems.push(`${where}.livenessProbe: must be httpGet /healthz, is ${probeTarget(c.livenessProbe)}`);
    if (c.readinessProbe?.httpGet?.path !== "/readyz") problems.push(`${where}.readinessProbe: must be httpGet /readyz, is ${probeTarget(c.readinessProbe)}`);
    if (c.startupProbe && c.startupProbe.httpGet?.path !== "/healthz") problems.push(`${where}.startupProbe: must be httpGet /healthz, is ${probeTarget(c.startupProbe)}`);
  }
  const sts = findObj(objs, "StatefulSet", "nats");
  const nats = (sts?.spec?.template?.spec?.containers || []).find((x) => /(^|\/)nats:/.test(x.image || ""));
  if (nats) {
    const where = `${objId(sts)}: container ${nats.name}`;
    const sp = nats.startupProbe;
    if (sp?.httpGet?.path !== "/healthz") problems.push(`${where}.startupProbe: must be httpGet /healthz (the full check: JetStream current with every stream and consumer), is ${probeTarget(sp)}`);
    const budget = (sp?.initialDelaySeconds || 0) + (sp?.periodSeconds ?? 10) * (sp?.failureThreshold ?? 3);
    if (sp && budget < 600) problems.push(`${where}.startupProbe: a budget of ${budget} s; a server catching up on its streams needs at least 600`);
    if (nats.livenessProbe?.httpGet?.path !== "/healthz?js-enabled-only=true") problems.push(`${where}.livenessProbe: must be /healthz?js-enabled-only=true, is ${probeTarget(nats.livenessProbe)}`);
    if (nats.readinessProbe?.httpGet?.path !== "/healthz?js-server-only=true") problems.push(`${where}.readinessProbe: must be /healthz?js-server-only=true, is ${probeTarget(nats.readinessProbe)}`);
  }
  for (const o of objs) {
    const t = podTemplate(o);
    if (!t) continue;
    (t.spec?.containers || []).forEach((c, i) => {
      const where = `${objId(o)}: container ${c.name}`;
      for (const p of ["livenessProbe", "readinessProbe", "startupProbe"])
        if (c[p]?.httpGet?.host) problems.push(`${where}.${p}: httpGet.host ${c[p].httpGet.host}: a probe checks its own pod, not another host`);
      if (i === 0) return;
      for (const p of ["livenessProbe", "readinessProbe", "startupProbe"]) {
        const pr = c[p];
        if (!pr) continue;
        const port = pr.httpGet?.port ?? pr.tcpSocket?.port;
        if (port == null) problems.push(`${where}.${p}: a sidecar probes only its own port (httpGet or tcpSocket), not ${probeTarget(pr)}`);
        else if (!(c.ports || []).some((cp) => cp.name === port || cp.containerPort === port)) problems.push(`${where}.${p}: port ${port} is not the sidecar's own`);
      }
    });
  }
  return problems;
}

/* ------------------------------------------------------------------------------------------ */
/* Policy: NATS operations                                                                    */
/* ------------------------------------------------------------------------------------------ */

/** A nats-server size ("40GB", "1536MB", "1G", 1024): bytes, or NaN. K/M/G/T are powers of 1000, KB/MB/GB/TB (and Ki, KiB, ...) of 1024. */
export function natsSize(v) {
  const m = /^"?([0-9]+)\s*([KMGT]?)(B|I|IB)?"?$/i.exec(String(v ?? "").trim());
  if (!m) return NaN;
  const pow = { "": 0, K: 1, M: 2, G: 3, T: 4 }[m[2].toUpperCase()];
  return Number(m[1]) * (m[3] ? 1024 : 1000) ** pow;
}

/** A Go runtime size (GOMEMLIMIT: "900MiB", "1GiB", a plain number of bytes): bytes, or NaN. */
export function goSize(v) {
  const m = /^([0-9]+)(B|KiB|MiB|GiB|TiB)?$/.exec(String(v ?? ""));
  if (!m) return NaN;
  return Number(m[1]) * { undefined: 1, B: 1, KiB: 2 ** 10, MiB: 2 ** 20, GiB: 2 ** 30, TiB: 2 ** 40 }[m[2]];
}

/** A nats-server duration ("30s", "2m", "1h"): seconds, or NaN. */
function natsSeconds(v) {
  const m = /^"?([0-9]+)(ms|s|m|h)"?$/.exec(String(v ?? "").trim());
  return m ? Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2]] : NaN;
}

/**
 * NATS can be restarted one server at a time without losing the quorum or the clients:
 * a pid_file on a writable volume, a preStop hook that puts that pid into lame duck mode, a
 * grace period longer than lame duck mode; GOMEMLIMIT between 50 and 95 % of the memory limit;
 * GOMAXPROCS taken from the container's CPU limit (not one thread per core of the node);
 * every `include` of the configuration present in its ConfigMap; an explicit max_file_store,
 * at most 90 % of the claimed volume; an alert on the store's use against that limit. With
 * `strictHostSpread` (prod), one server per node is a hard rule: a required pod anti-affinity
 * on the hostname, or a DoNotSchedule spread with minDomains of at least the replicas.
 */
export function checkNatsOperations(objs, { strictHostSpread = false } = {}) {
  const problems = [];
  const sts = findObj(objs, "StatefulSet", "nats");
  if (!sts) return ["StatefulSet/nats: missing"];
  const id = objId(sts);
  const spec = sts.spec?.template?.spec || {};
  const c = (spec.containers || []).find((x) => /(^|\/)nats:/.test(x.image || ""));
  if (!c) return [`${id}: no container runs the nats image`];
  const where = `${id}: container ${c.name}`;
  const confVol = (spec.volumes || []).find((v) => v.configMap);
  const cm = confVol && findObj(objs, "ConfigMap", confVol.configMap.name);
  const files = cm?.data || {};
  const conf = Object.values(files).join("\n").replace(/#.*$/gm, "");
  if (!cm) return [...problems, `${id}: no ConfigMap volume with the server configuration`];
  for (const m of conf.matchAll(/^\s*include\s+"?([^\s"]+)"?/gm)) {
    const f = m[1].replace(/^\.\//, "");
    if (!(f in files)) problems.push(`ConfigMap/${cm.metadata.name}: include ${m[1]}: no such key in the ConfigMap (the server would not start)`);
  }
  // pid file and lame duck
  const pid = /^\s*pid_file\s*[:=]?\s*"?([^\s"]+)"?/m.exec(conf)?.[1];
  if (!pid) problems.push(`ConfigMap/${cm.metadata.name}: pid_file: not set (the preStop hook signals the server through it)`);
  else {
    const mount = (c.volumeMounts || []).find((vm) => pid.startsWith(vm.mountPath.replace(/\/?$/, "/")));
    if (!mount || mount.readOnly) problems.push(`${where}: pid_file ${pid} is not on a writable volume (the root filesystem is read-only)`);
    const hook = [...(c.lifecycle?.preStop?.exec?.command || [])].join(" ");
    if (!new RegExp(`(--signal|-sl)[= ]ldm=${pid.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`).test(hook))
      problems.push(`${where}.lifecycle.preStop: must put the server into lame duck mode (nats-server --signal ldm=${pid}), is "${hook || "none"}"`);
  }
  const ldm = natsSeconds(/^\s*lame_duck_duration\s*[:=]?\s*(\S+)/m.exec(conf)?.[1] ?? "2m");
  const grace = natsSeconds(/^\s*lame_duck_grace_period\s*[:=]?\s*(\S+)/m.exec(conf)?.[1] ?? "10s");
  const tgps = spec.terminationGracePeriodSeconds ?? 30;
  if (!(tgps >= ldm + grace + 10)) problems.push(`${id}: spec.template.spec.terminationGracePeriodSeconds: ${tgps}, less than lame duck mode (${ldm} s + ${grace} s) and a margin`);
  // memory
  const gomem = (c.env || []).find((e) => e.name === "GOMEMLIMIT")?.value;
  const memLimit = quantity("memory", c.resources?.limits?.memory);
  if (gomem == null) problems.push(`${where}: env GOMEMLIMIT: not set (the Go runtime would grow past the memory limit)`);
  else if (Number.isNaN(goSize(gomem))) problems.push(`${where}: env GOMEMLIMIT: ${gomem} is not a Go size`);
  else if (!(goSize(gomem) <= 0.95 * memLimit && goSize(gomem) >= 0.5 * memLimit))
    problems.push(`${where}: env GOMEMLIMIT: ${gomem} is not between 50 and 95 % of the memory limit ${c.resources?.limits?.memory}`);
  // scheduler threads: from the CPU limit
  const procs = (c.env || []).find((e) => e.name === "GOMAXPROCS");
  const ref = procs?.valueFrom?.resourceFieldRef;
  if (procs == null) problems.push(`${where}: env GOMAXPROCS: not set (the Go runtime would run a thread per core of the node, beyond the CPU limit)`);
  else if (!(ref?.resource === "limits.cpu" && (ref.containerName == null || ref.containerName === c.name) && String(ref.divisor ?? "1") === "1"))
    problems.push(`${where}: env GOMAXPROCS: must come from this container's limits.cpu (resourceFieldRef, divisor 1)`);
  else if (c.resources?.limits?.cpu == null) problems.push(`${where}: env GOMAXPROCS: the container has no CPU limit to take it from`);
  // the store's limit
  const js = /jetstream\s*\{([^}]*)\}/.exec(conf)?.[1];
  const mfs = js && /max_file(_store)?\s*[:=]?\s*("?[0-9]+\s*[A-Za-z]*"?)/.exec(js)?.[2];
  const claim = (sts.spec?.volumeClaimTemplates || []).find((v) => v.metadata?.name === "data");
  const size = quantity("memory", claim?.spec?.resources?.requests?.storage);
  if (!js) problems.push(`ConfigMap/${cm.metadata.name}: no jetstream block`);
  else if (!mfs) problems.push(`ConfigMap/${cm.metadata.name}: jetstream.max_file_store: not set (the server would take 75 % of the space still free at each start)`);
  else if (Number.isNaN(natsSize(mfs))) problems.push(`ConfigMap/${cm.metadata.name}: jetstream.max_file_store: ${mfs} is not a size`);
  else if (!(natsSize(mfs) <= 0.9 * size))
    problems.push(`ConfigMap/${cm.metadata.name}: jetstream.max_file_store: ${mfs} (${natsSize(mfs)} bytes) is more than 90 % of the volume (${claim?.spec?.resources?.requests?.storage})`);
  const alerts = objs.filter((o) => o.kind === "PrometheusRule").flatMap((r) => (r.spec?.groups || []).flatMap((g) => g.rules || [])).filter((r) => r.alert);
  const storeAlert = alerts.find((r) => /nats_varz_jetstream_stats_storage/.test(r.expr) && /nats_varz_jetstream_config_max_storage/.test(r.expr) && /\s>\s*0?\.[0-9]+/.test(r.expr));
  if (!storeAlert) problems.push("PrometheusRule: no alert compares nats_varz_jetstream_stats_storage with nats_varz_jetstream_config_max_storage below 100 % (the store fills unannounced)");
  // one per node
  if (strictHostSpread) {
    const sel = (l) => selects(l, sts.spec?.template?.metadata?.labels);
    const anti = (spec.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution || []).some((t) => t.topologyKey === "kubernetes.io/hostname" && sel(t.labelSelector));
    const spread = (spec.topologySpreadConstraints || []).some(
      (t) => t.topologyKey === "kubernetes.io/hostname" && t.whenUnsatisfiable === "DoNotSchedule" && t.maxSkew === 1 && (t.minDomains ?? 1) >= (sts.spec?.replicas ?? 1) && sel(t.labelSelector),
    );
    if (!anti && !spread)
      problems.push(`${id}: spec.template.spec: nothing keeps the ${sts.spec?.replicas} servers on different nodes (a required podAntiAffinity on kubernetes.io/hostname, or a DoNotSchedule spread with minDomains ${sts.spec?.replicas})`);
  }
  return problems;
}

/* ------------------------------------------------------------------------------------------ */
/* Policy: PostgreSQL roles, TLS and backups                                                  */
/* ------------------------------------------------------------------------------------------ */

/** For a container: the Secret its DSN entry i logs in with (from user=$(VAR) and VAR's secretKeyRef). */
function dsnSecrets(c, objs) {
  const dsns = (effectiveEnv(c, objs).SHARD_DSNS || "").split(",");
  const raw = String((c.env || []).find((e) => e.name === "SHARD_DSNS")?.value ?? "").split(",");
  return raw.map((entry, i) => {
    const v = /user=\$\(([A-Za-z_][A-Za-z0-9_]*)\)/.exec(entry)?.[1];
    const ref = (c.env || []).find((e) => e.name === v)?.valueFrom?.secretKeyRef;
    const host = /(?:^|\s)host=(\S+)/.exec(dsns[i] || entry)?.[1];
    return { host, secret: ref?.name ?? null };
  });
}

/**
 * Two roles per shard: the container that runs `cart-store migrate` logs in with one Secret
 * (the owner: DDL), every other cartshard container with another (the runtime role), the same
 * in all of them; where the usernames are known they differ. For a CloudNativePG Cluster the
 * migrator's Secret is the initdb owner's, the runtime Secret is a managed role's that logs in,
 * belongs to a group, and that group is granted rows by postInitApplicationSQL.
 */
export function checkRoles(objs, external = []) {
  const problems = [];
  const secret = (name) => findObj(objs, "Secret", name) || findObj(external, "Secret", name);
  const apps = appContainers(objs);
  const isMigrate = (c) => [...(c.command || []), ...(c.args || [])].includes("migrate");
  const ddl = apps.filter(({ c }) => isMigrate(c));
  const rt = apps.filter(({ c }) => !isMigrate(c));
  if (ddl.length === 0) return ["no container runs `cart-store migrate`"];
  const ddlSecrets = dsnSecrets(ddl[0].c, objs);
  const rtSecrets = rt.length ? dsnSecrets(rt[0].c, objs) : [];
  for (const { o, c } of rt) {
    const mine = dsnSecrets(c, objs);
    if (JSON.stringify(mine) !== JSON.stringify(rtSecrets)) problems.push(`${objId(o)}: container ${c.name}: logs in to the shards with ${mine.map((m) => m.secret).join(", ")}, not ${rtSecrets.map((m) => m.secret).join(", ")} like the other services`);
  }
  ddlSecrets.forEach((d, i) => {
    const r = rtSecrets[i];
    if (!d.secret || !r?.secret) {
      problems.push(`SHARD_DSNS entry ${i}: no user=$(VAR) from a Secret`);
      return;
    }
    if (d.secret === r.secret) problems.push(`SHARD_DSNS entry ${i} (${d.host}): migrate and the services log in with the same Secret ${d.secret}; the services need a runtime role without DDL`);
    const du = secretValue(secret(d.secret), "username");
    const ru = secretValue(secret(r.secret), "username");
    if (du != null && ru != null && du === ru) problems.push(`SHARD_DSNS entry ${i} (${d.host}): ${d.secret} and ${r.secret} name the same role ${du}`);
    const cluster = objs.find((o) => o.kind === "Cluster" && o.apiVersion === "postgresql.cnpg.io/v1" && `${o.metadata.name}-rw` === d.host);
    if (!cluster) return;
    const cid = objId(cluster);
    // A new cluster (initdb) or one restored from a backup (recovery: its roles and grants come
    // with the data; the owner's password is set again from the Secret).
    const boot = cluster.spec?.bootstrap?.initdb ? "initdb" : "recovery";
    const init = cluster.spec?.bootstrap?.[boot] || {};
    if (init.secret?.name !== d.secret) problems.push(`${cid}: spec.bootstrap.${boot}.secret is ${init.secret?.name}, but migrate logs in with ${d.secret}`);
    const role = (cluster.spec?.managed?.roles || []).find((x) => x.passwordSecret?.name === r.secret);
    if (!role) problems.push(`${cid}: spec.managed.roles: no role with passwordSecret ${r.secret} (the services' login)`);
    else {
      if (role.login !== true || (role.ensure ?? "present") !== "present") problems.push(`${cid}: spec.managed.roles[${role.name}]: must be present with login: true`);
      if (role.superuser || role.createdb || role.createrole) problems.push(`${cid}: spec.managed.roles[${role.name}]: must not be superuser, createdb or createrole`);
      const sql = (init.postInitApplicationSQL || []).join(";\n");
      const granted = (role.inRoles || []).some((g) => new RegExp(`ALTER DEFAULT PRIVILEGES FOR ROLE ${init.owner}\\b[^;]*ON TABLES TO ${g}\\b`, "i").test(sql));
      if (boot === "initdb" && !granted) problems.push(`${cid}: spec.managed.roles[${role.name}]: none of its inRoles (${(role.inRoles || []).join(", ") || "none"}) gets the owner's tables by ALTER DEFAULT PRIVILEGES in postInitApplicationSQL`);
    }
  });
  return problems;
}

/**
 * verify-full to every shard: libpq's sslmode (PGSSLMODE, or sslmode= in the entry) is
 * verify-full in every cartshard container, and each entry's sslrootcert is a file the
 * container mounts from its Cluster's CA Secret (<cluster>-ca, key ca.crt), not optional.
 */
export function checkShardTls(objs) {
  const problems = [];
  for (const { o, c } of appContainers(objs)) {
    const where = `${objId(o)}: container ${c.name}`;
    const env = effectiveEnv(c, objs);
    const vols = podTemplate(o)?.spec?.volumes || [];
    (env.SHARD_DSNS || "").split(",").forEach((dsn, i) => {
      const mode = /(?:^|\s)sslmode=(\S+)/.exec(dsn)?.[1] ?? env.PGSSLMODE ?? "prefer";
      if (mode !== "verify-full") problems.push(`${where}: SHARD_DSNS entry ${i}: sslmode ${mode}, expected verify-full`);
      const host = /(?:^|\s)host=(\S+)/.exec(dsn)?.[1] || "";
      const root = /(?:^|\s)sslrootcert=(\S+)/.exec(dsn)?.[1] ?? env.PGSSLROOTCERT;
      if (!root) {
        problems.push(`${where}: SHARD_DSNS entry ${i}: no sslrootcert (the CA to verify ${host} with)`);
        return;
      }
      const want = `${host.replace(/-rw$/, "")}-ca`;
      const mount = (c.volumeMounts || []).find((m) => root.startsWith(m.mountPath.replace(/\/?$/, "/")));
      const rel = mount ? root.slice(mount.mountPath.replace(/\/?$/, "/").length) : null;
      const vol = mount && vols.find((v) => v.name === mount.name);
      const sources = vol ? (vol.projected?.sources || []).map((s) => s.secret).filter(Boolean).concat(vol.secret ? [{ ...vol.secret, name: vol.secret.secretName }] : []) : [];
      const src = sources.find((s) => (s.items || [{ key: "ca.crt", path: "ca.crt" }]).some((it) => it.path === rel && it.key === "ca.crt") && s.name === want);
      if (!src) problems.push(`${where}: SHARD_DSNS entry ${i}: sslrootcert ${root} is not ca.crt of the Secret ${want} mounted in the container`);
      else if (src.optional) problems.push(`${where}: SHARD_DSNS entry ${i}: the Secret ${want} is optional; verify-full cannot work without it`);
    });
  }
  return problems;
}

/**
 * Backups: every CloudNativePG Cluster archives its WAL through the Barman Cloud plugin into an
 * ObjectStore of the render, and a ScheduledBackup (plugin method, a six-field schedule) takes
 * its base backups; no two shards share a destination.
 */
export const BARMAN_PLUGIN = "barman-cloud.cloudnative-pg.io";
export function checkBackups(objs) {
  const problems = [];
  const clusters = objs.filter((o) => o.kind === "Cluster" && o.apiVersion === "postgresql.cnpg.io/v1");
  const stores = objs.filter((o) => o.kind === "ObjectStore");
  const dests = new Map();
  for (const s of stores) {
    const d = s.spec?.configuration?.destinationPath;
    if (dests.has(d)) problems.push(`${objId(s)}: spec.configuration.destinationPath ${d} is also ${dests.get(d)}'s: a restore would mix two shards`);
    dests.set(d, objId(s));
  }
  for (const c of clusters) {
    const id = objId(c);
    const pl = (c.spec?.plugins || []).find((p) => p.name === BARMAN_PLUGIN);
    if (!pl) problems.push(`${id}: spec.plugins: no ${BARMAN_PLUGIN} (no WAL archiving, no backups)`);
    else {
      if (pl.isWALArchiver !== true) problems.push(`${id}: spec.plugins[${BARMAN_PLUGIN}].isWALArchiver: must be true`);
      const store = pl.parameters?.barmanObjectName;
      if (!stores.some((s) => s.metadata?.name === store)) problems.push(`${id}: spec.plugins[${BARMAN_PLUGIN}].parameters.barmanObjectName: no ObjectStore ${store} in the render`);
    }
    if (c.spec?.backup?.barmanObjectStore) problems.push(`${id}: spec.backup.barmanObjectStore: the in-tree Barman Cloud support is deprecated; use the plugin`);
    const sb = objs.filter((o) => o.kind === "ScheduledBackup" && o.spec?.cluster?.name === c.metadata.name);
    if (sb.length === 0) problems.push(`${id}: no ScheduledBackup takes its base backups`);
    for (const b of sb) {
      if (b.spec?.method !== "plugin" || b.spec?.pluginConfiguration?.name !== BARMAN_PLUGIN)
        problems.push(`${objId(b)}: spec.method/pluginConfiguration: must be plugin with ${BARMAN_PLUGIN}, is ${b.spec?.method}/${b.spec?.pluginConfiguration?.name}`);
      if (String(b.spec?.schedule || "").trim().split(/\s+/).length !== 6) problems.push(`${objId(b)}: spec.schedule: "${b.spec?.schedule}" is not six fields (CloudNativePG's schedule starts with seconds)`);
    }
  }
  return problems;
}

/* ------------------------------------------------------------------------------------------ */
/* Policy: what the internet reaches, what Prometheus scrapes                                 */
/* ------------------------------------------------------------------------------------------ */

export const INTERNAL_PATHS = ["/metrics", "/healthz", "/readyz"];

/** Does an Ingress path of this type match the request path x (Kubernetes' element-wise prefix)? */
function ingressMatches(path, type, x) {
  if (type === "Exact") return x === path;
  const p = path.replace(/\/+$/, "");
  return p === "" || x === p || x.startsWith(`${p}/`);
}

/**
 * No Ingress lets the internet reach the gateway's /metrics, /healthz or /readyz: every path
 * (and default backend) that leads to the Service cart-gateway is checked against them. With
 * `requireIngress`, some Ingress must lead to cart-gateway.
 */
export function checkIngress(objs, { requireIngress = false } = {}) {
  const problems = [];
  let routes = 0;
  for (const ing of objs.filter((o) => o.kind === "Ingress")) {
    const id = objId(ing);
    const gw = (b) => b?.service?.name === "cart-gateway";
    if (gw(ing.spec?.defaultBackend)) problems.push(`${id}: spec.defaultBackend: cart-gateway for every path, ${INTERNAL_PATHS.join(", ")} included`);
    for (const r of ing.spec?.rules || []) {
      for (const p of r.http?.paths || []) {
        if (!gw(p.backend)) continue;
        routes++;
        for (const x of INTERNAL_PATHS) if (ingressMatches(p.path || "/", p.pathType, x)) problems.push(`${id}: path ${p.path} (${p.pathType}) lets the internet reach the gateway's ${x}`);
      }
    }
  }
  if (requireIngress && routes === 0) problems.push("Ingress: none leads to cart-gateway");
  return problems;
}

/**
 * Prometheus can scrape everything: a PodMonitor (or ServiceMonitor) for the gateways, the
 * workers, cart-stats, NATS, Redis and, where there are CloudNativePG Clusters, their instances;
 * each selects pods of the render, names a port those pods declare, and the NetworkPolicies let
 * the monitoring namespace reach it. NATS is scraped through an exporter, not the server's own
 * JSON monitoring port (8222).
 */
export function checkMonitoring(objs) {
  const problems = [];
  const pods = podsOf(objs);
  const policies = objs.filter((o) => o.kind === "NetworkPolicy");
  const covered = new Set();
  for (const m of objs.filter((o) => o.kind === "PodMonitor")) {
    const id = objId(m);
    const mine = pods.filter((p) => selects(m.spec?.selector, p.labels));
    if (mine.length === 0) problems.push(`${id}: spec.selector selects no pods of the render`);
    for (const p of mine) {
      covered.add(p.labels["app.kubernetes.io/name"] ?? "");
      if ("cnpg.io/cluster" in p.labels) covered.add("cnpg");
      for (const ep of m.spec?.podMetricsEndpoints || []) {
        const port = p.ports[ep.port];
        if (port == null) {
          problems.push(`${id}: port ${ep.port}: ${p.id} declares no such port`);
          continue;
        }
        if (p.labels["app.kubernetes.io/name"] === "nats" && port === 8222) problems.push(`${id}: port ${ep.port} (8222) is the server's JSON monitoring, not Prometheus metrics; scrape the exporter`);
        if (!flowAllowed(policies, OUTSIDE.prometheus, p, port)) problems.push(`${id}: NetworkPolicy: Prometheus (namespace monitoring) may not reach ${p.id}:${port}`);
      }
    }
  }
  for (const m of objs.filter((o) => o.kind === "ServiceMonitor")) {
    const id = objId(m);
    const svcs = objs.filter((o) => o.kind === "Service" && selects(m.spec?.selector, o.metadata?.labels));
    if (svcs.length === 0) problems.push(`${id}: spec.selector selects no Service of the render`);
    for (const svc of svcs) {
      for (const ep of m.spec?.endpoints || []) {
        const sp = (svc.spec?.ports || []).find((x) => x.name === ep.port);
        if (!sp) problems.push(`${id}: port ${ep.port}: Service/${svc.metadata.name} has no such port`);
        for (const p of pods.filter((x) => selects({ matchLabels: svc.spec?.selector || {} }, x.labels))) {
          covered.add(p.labels["app.kubernetes.io/name"] ?? "");
          const port = typeof sp?.targetPort === "string" ? p.ports[sp.targetPort] : (sp?.targetPort ?? sp?.port);
          if (port != null && !flowAllowed(policies, OUTSIDE.prometheus, p, port)) problems.push(`${id}: NetworkPolicy: Prometheus (namespace monitoring) may not reach ${p.id}:${port}`);
        }
      }
    }
  }
  const want = ["cart-gateway", "cart-store", "cart-stats", "nats", "redis"];
  if (pods.some((p) => "cnpg.io/cluster" in p.labels)) want.push("cnpg");
  for (const w of want) if (!covered.has(w)) problems.push(`no PodMonitor or ServiceMonitor scrapes ${w === "cnpg" ? "the CloudNativePG instances" : w}`);
  return problems;
}

/**
 * Every PrometheusRule of the render passes `promtool check rules` (its spec is a rule file).
 * Returns problems; `promtool` is the path of the binary.
 */
export function checkRulesWithPromtool(objs, promtool, tmpdir) {
  const problems = [];
  for (const r of objs.filter((o) => o.kind === "PrometheusRule")) {
    const f = join(tmpdir, `${r.metadata.name}.rules.yaml`);
    writeFileSync(f, stringify({ groups: r.spec?.groups || [] }));
    try {
      execFileSync(promtool, ["check", "rules", f], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    } catch (e) {
      problems.push(`${objId(r)}: promtool check rules: ${`${e.stdout || ""}${e.stderr || ""}`.trim().replace(/\n+/g, " | ")}`);
    }
  }
  return problems;
}

/**
 * `promtool test rules` on a test file whose rule_files entry RULES stands for the groups of
 * the PrometheusRule `name` in the render. Returns problems (promtool's words).
 */
export function testRulesWithPromtool(objs, name, testFile, promtool, tmpdir) {
  const rule = objs.find((o) => o.kind === "PrometheusRule" && o.metadata?.name === name);
  if (!rule) return [`PrometheusRule/${name}: missing from the render`];
  const rules = join(tmpdir, `${name}.rules.yaml`);
  writeFileSync(rules, stringify({ groups: rule.spec?.groups || [] }));
  const test = join(tmpdir, `${name}.test.yaml`);
  writeFileSync(test, readFileSync(testFile, "utf8").replace(/^(\s*-\s*)RULES\s*$/m, `$1${rules}`));
  try {
    execFileSync(promtool, ["test", "rules", test], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (e) {
    return [`PrometheusRule/${name}: promtool test rules: ${`${e.stdout || ""}${e.stderr || ""}`.trim()}`];
  }
  return [];
}

/* ------------------------------------------------------------------------------------------ */
/* Policy: images and Redis                                                                   */
/* ------------------------------------------------------------------------------------------ */

/**
 * One name per image: cartshard's are cartshard/cart-gateway, cartshard/cart-store and
 * cartshard/cart-stats and nothing else. Redis is 7.2.11 or newer (the CVEs fixed in 7.2.6 and
 * 7.2.11), a cache (no AOF, maxmemory with allkeys-lru), and no command line carries a
 * password ($(REDIS_PASSWORD) expanded into the arguments, --requirepass).
 */
export function checkImagesAndRedis(objs) {
  const problems = [];
  for (const { o, c } of allContainers(objs)) {
    const where = `${objId(o)}: container ${c.name}`;
    const img = c.image || "";
    if (/(^|\/)cartshard\//.test(img) && !/(^|\/)cartshard\/cart-(gateway|store|stats)(:|@|$)/.test(img)) problems.push(`${where}.image: ${img}: cartshard's images are cartshard/cart-gateway, cartshard/cart-store and cartshard/cart-stats`);
    const argv = [...(c.command || []), ...(c.args || [])].join(" ");
    if (/\$\([A-Z_]*PASSWORD[A-Z_]*\)/.test(argv) || /--requirepass\b/.test(argv)) problems.push(`${where}: a password on the command line (${argv.slice(0, 80)}…); read it from a file`);
    const rv = /(^|\/)redis:(\d+)\.(\d+)\.(\d+)/.exec(img);
    if (/(^|\/)redis:/.test(img)) {
      if (!rv) problems.push(`${where}.image: ${img}: no exact Redis version`);
      else {
        const [maj, min, pat] = [Number(rv[2]), Number(rv[3]), Number(rv[4])];
        if (maj < 7 || (maj === 7 && min < 2) || (maj === 7 && min === 2 && pat < 11)) problems.push(`${where}.image: ${img}: Redis before 7.2.11 has known CVEs`);
      }
      if (!/--maxmemory\s+\S+/.test(argv) || !/--maxmemory-policy\s+allkeys-lru/.test(argv)) problems.push(`${where}: Redis is a cache: --maxmemory and --maxmemory-policy allkeys-lru`);
      if (!/--appendonly\s+"?no"?/.test(argv)) problems.push(`${where}: Redis is a cache: --appendonly no`);
    }
  }
  return problems;
}

/**
 * One name everywhere: the cartshard images the manifests run are the ones docker/ builds
 * (the Dockerfile's targets) and docker/compose.yaml runs, and Redis is 7.2.11 or newer in
 * both. `compose` and `dockerfile` are the files' texts.
 */
export function checkImagesAcrossDeployments(objs, compose, dockerfile) {
  const problems = [];
  const k8s = new Set(appContainers(objs).map(({ c }) => /cartshard\/(cart-[a-z]+)/.exec(c.image)?.[1]).filter(Boolean));
  const composed = new Set([...compose.matchAll(/image:\s*\S*cartshard\}?\/([a-z-]+):/g)].map((m) => m[1]));
  const targets = new Set([...dockerfile.matchAll(/^FROM\s+\S+\s+AS\s+(cart-[a-z]+)\s*$/gim)].map((m) => m[1]));
  for (const n of k8s) {
    if (!composed.has(n)) problems.push(`cartshard/${n}: run by the manifests, but docker/compose.yaml runs ${[...composed].join(", ") || "none"}`);
    if (!targets.has(n)) problems.push(`cartshard/${n}: run by the manifests, but docker/Dockerfile builds the targets ${[...targets].join(", ") || "none"}`);
  }
  for (const n of composed) if (!k8s.has(n)) problems.push(`cartshard/${n}: run by docker/compose.yaml, not by the manifests`);
  for (const m of compose.matchAll(/redis:(\d+)\.(\d+)\.(\d+)/g)) {
    const [maj, min, pat] = [Number(m[1]), Number(m[2]), Number(m[3])];
    if (maj < 7 || (maj === 7 && min < 2) || (maj === 7 && min === 2 && pat < 11)) problems.push(`docker/compose.yaml: ${m[0]}: Redis before 7.2.11 has known CVEs`);
  }
  return problems;
}
