// The deployment files as a user applies them: the Dockerfile, the compose file and every
// kustomize overlay pass scripts/validate-manifests.mjs (Kubernetes and Istio schemas, the
// compose-spec schema and `docker-compose config`, the mesh's own wiring rules), broken
// copies are refused with the object and field named, and the rendered overlays say what
// the README promises (dev: one replica each, auth off; prod: HPA, PDB, Istio STRICT; the
// mesh canary: weights and a mirror onto existing subsets).
//
// No Docker engine and no cluster run here: the image is never built, nothing is applied.
// The validators are kubectl (kustomize), Debian's docker-compose and three npm packages;
// without them the validator exits 69 and these tests skip saying what is missing, except
// under CI=true, where a missing validator fails.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, it, type TestContext } from "node:test";
import YAML from "yaml";
import { REPO_ROOT } from "../support/mlmesh-process.js";

const SCRIPT = path.join(REPO_ROOT, "scripts/validate-manifests.mjs");
const OVERLAYS = path.join(REPO_ROOT, "deploy/k8s/overlays");

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function validate(args: string[]): Run {
  const r = spawnSync(process.execPath, [SCRIPT, ...args], { encoding: "utf8", cwd: REPO_ROOT, timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Skips (or, in CI, fails) when the validator said a tool or package is missing. */
function unavailable(t: TestContext, r: Run): boolean {
  if (r.status !== 69) return false;
  const why = r.stderr.trim();
  if (process.env.CI === "true") assert.fail(`a manifest validator is missing in CI: ${why}`);
  t.skip(why);
  return true;
}

type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; spec?: Record<string, unknown> } & Record<string, unknown>;

function kustomize(t: TestContext, overlay: string): K8sObject[] | undefined {
  const r = spawnSync(process.env.KUBECTL ?? "kubectl", ["kustomize", path.join(OVERLAYS, overlay)], { encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.error) {
    if (process.env.CI === "true") assert.fail(`kubectl is needed to render the overlays: ${r.error.message}`);
    t.skip(`kubectl is not installed: ${r.error.message}`);
    return undefined;
  }
  assert.equal(r.status, 0, r.stderr);
  return YAML.parseAllDocuments(r.stdout).map((d) => d.toJS() as K8sObject);
}

const find = (objs: K8sObject[], kind: string, name: string) => objs.find((o) => o.kind === kind && o.metadata.name === name);
// Rendered YAML has no static type: walked by path, checked by the assertions.
const at = (o: unknown, ...keys: (string | number)[]): any => keys.reduce<any>((v, k) => (v == null ? undefined : v[k]), o);

function tmpdir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "mlmesh-manifests-"));
}

describe("deployment manifests", () => {
  it("the Dockerfile, every overlay and the compose file pass the validator", (t) => {
    const r = validate([]);
    if (unavailable(t, r)) return;
    assert.equal(r.status, 0, `validator refused the repository's manifests:\n${r.stderr}`);
    for (const overlay of fs.readdirSync(OVERLAYS)) assert.match(r.stdout, new RegExp(`k8s: deploy/k8s/overlays/${overlay}: \\d+ objects`));
    assert.match(r.stdout, /compose: deploy\/compose\.yaml: 9 services/);
    assert.match(r.stdout, /docker: Dockerfile: 2 stages, \d+ runtime files reached from bin\/mlmesh\.mjs, all in the image: true/);
    assert.match(r.stdout, /all manifests valid/);
  });

  it("a broken overlay is refused, naming the object and the field", (t) => {
    const dir = tmpdir();
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    // A Kubernetes schema error, an Istio schema error, and mesh-rule errors in one render.
    fs.writeFileSync(
      path.join(dir, "kustomization.yaml"),
      YAML.stringify({ apiVersion: "kustomize.config.k8s.io/v1beta1", kind: "Kustomization", namespace: "t", resources: ["objects.yaml"] }),
    );
    const objects = [
      {
        apiVersion: "apps/v1",
        kind: "StatefulSet",
        metadata: { name: "registry" },
        spec: {
          serviceName: "registry",
          replicas: "two",
          selector: { matchLabels: { app: "registry" } },
          template: {
            metadata: { labels: { app: "registry" } },
            spec: {
              // Shorter than the drain: the kubelet would kill calls still in flight.
              terminationGracePeriodSeconds: 12,
              containers: [
                {
                  name: "registry",
                  image: "mlmesh:0.1.0",
                  args: ["serve", "registry"],
                  ports: [{ name: "http", containerPort: 8081 }, { name: "grpc", containerPort: 50051 }],
                  readinessProbe: { httpGet: { path: "/healthz", port: "http" } },
                  livenessProbe: { httpGet: { path: "/healthz", port: "http" } },
                  startupProbe: { httpGet: { path: "/healthz", port: "http" } },
                  lifecycle: { preStop: { exec: { command: ["sleep", "5"] } } },
                  env: [{ name: "MLMESH_SHUTDOWN_GRACE", value: "10000" }],
                },
              ],
            },
          },
        },
      },
      {
        apiVersion: "networking.istio.io/v1beta1",
        kind: "VirtualService",
        metadata: { name: "inference" },
        spec: {
          hosts: ["inference"],
          http: [
            {
              route: [
                { destination: { host: "inference", subset: "v1" }, weight: 80 },
                { destination: { host: "inference", subset: "v2" }, weight: "ten" },
              ],
            },
          ],
        },
      },
      {
        apiVersion: "security.istio.io/v1beta1",
        kind: "AuthorizationPolicy",
        metadata: { name: "registry" },
        spec: { selector: { matchLabels: { app: "registry" } }, rules: [{ from: [{ source: { principals: ["cluster.local/ns/t/sa/nobody"] } }] }] },
      },
    ];
    fs.writeFileSync(path.join(dir, "objects.yaml"), objects.map((o) => YAML.stringify(o)).join("---\n"));
    const r = validate(["--only", "k8s", "--k8s", dir]);
    if (unavailable(t, r)) return;
    assert.equal(r.status, 1, r.stdout + r.stderr);
    const expected = [
      /StatefulSet\/registry: data\/spec\/replicas must be integer/, // Kubernetes schema
      /VirtualService\/inference: data\/spec\/http\/0\/route\/1\/weight must be integer/, // Istio schema
      /StatefulSet\/registry: containers\[0\]\.readinessProbe: must GET \/readyz on the HTTP port/,
      /StatefulSet\/registry: terminationGracePeriodSeconds 12 < preStop 5 s \+ MLMESH_SHUTDOWN_GRACE_MS 10 s \+ 5 s/,
      /StatefulSet\/registry: securityContext\.runAsNonRoot must be true/,
      /StatefulSet\/registry: env MLMESH_SHUTDOWN_GRACE: no such variable/,
      /StatefulSet\/registry: MLMESH_DATA_DIR must contain \$\(POD_NAME\)/,
      /AuthorizationPolicy\/registry: principal cluster\.local\/ns\/t\/sa\/nobody: no ServiceAccount nobody/,
      /VirtualService\/inference: destination inference subset v1 is not defined by a DestinationRule/,
      /no allow-nothing AuthorizationPolicy/,
      /no Service named registry/,
    ];
    for (const re of expected) assert.match(r.stderr, re);
  });

  it("a broken compose file is refused by the schema, docker-compose and the wiring rules", (t) => {
    const dir = tmpdir();
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const doc = YAML.parse(fs.readFileSync(path.join(REPO_ROOT, "deploy/compose.yaml"), "utf8"), { merge: true }) as {
      services: Record<string, Record<string, unknown>>;
    };
    (doc.services.router!.depends_on as Record<string, { condition: string }>).inference!.condition = "service_ready";
    (doc.services.inference!.environment as Record<string, string>).MLMESH_REGISTRY_ADDR = "http://registry:50052";
    doc.services.features!.command = ["serve", "feature"];
    (doc.services.inference!.environment as Record<string, string>).MLMESH_INFERENCE_WORKER = "2";
    const file = path.join(dir, "compose.yaml");
    fs.writeFileSync(file, YAML.stringify(doc));
    const r = validate(["--only", "compose", "--compose", file]);
    if (unavailable(t, r)) return;
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /\/services\/router\/depends_on\/inference\/condition must be equal to one of the allowed values/);
    assert.match(r.stderr, /docker-compose config: .*condition/s);
    assert.match(r.stderr, /inference\.environment\.MLMESH_REGISTRY_ADDR must be http:\/\/registry:50051/);
    assert.match(r.stderr, /features\.command must be \["serve", "features"\]/);
    assert.match(r.stderr, /inference\.environment\.MLMESH_INFERENCE_WORKER: no such variable in lib\/config\*\.ts/);
    // Relative mounts are resolved next to the file: the copy has no prometheus/ beside it.
    assert.match(r.stderr, /prometheus\.volumes: \.\/prometheus does not exist/);
  });

  it("a Dockerfile whose image would miss runtime code or run as root is refused", (t) => {
    const dir = tmpdir();
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const original = fs.readFileSync(path.join(REPO_ROOT, "Dockerfile"), "utf8");
    const broken = original.replace(/^COPY gen \.\/gen\n/m, "").replace(/^USER 1000:1000$/m, "USER root").replace(/^HEALTHCHECK[\s\S]*?\n(?=# SIGTERM)/m, "");
    assert.notEqual(broken, original);
    fs.writeFileSync(path.join(dir, "Dockerfile"), broken);
    // Files that no import names but the services load: SQL migrations, the ONNX worker.
    fs.writeFileSync(path.join(dir, ".dockerignore"), fs.readFileSync(path.join(REPO_ROOT, ".dockerignore"), "utf8") + "services/**/migrations/**\n**/session-worker.mjs\n");
    const r = validate(["--only", "docker", "--dockerfile", path.join(dir, "Dockerfile")]);
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /gen\/\S+ is loaded at run time \(from bin\/mlmesh\.mjs\) but not in the image/);
    assert.match(r.stderr, /services\/registry\/migrations\/\S+\.sql is loaded at run time/);
    assert.match(r.stderr, /services\/inference\/session-worker\.mjs is loaded at run time/);
    assert.match(r.stderr, /must switch to a non-root USER/);
    assert.match(r.stderr, /HEALTHCHECK must GET \/healthz/);
  });

  it("dev: one replica of everything, authentication off, traces to Jaeger", (t) => {
    const objs = kustomize(t, "dev");
    if (!objs) return;
    const sets = objs.filter((o) => o.kind === "StatefulSet");
    assert.deepEqual(sets.map((o) => o.metadata.name).sort(), ["experiments", "features", "inference", "nats", "registry", "router"]);
    for (const s of sets) assert.equal(at(s, "spec", "replicas"), 1, s.metadata.name);
    assert.equal(objs.filter((o) => o.kind === "HorizontalPodAutoscaler" || o.kind.endsWith("Policy") || o.kind === "PeerAuthentication").length, 0);
    const cm = objs.find((o) => o.kind === "ConfigMap" && o.metadata.name.startsWith("mlmesh-config"));
    assert.equal(at(cm, "data", "MLMESH_AUTH"), "off");
    assert.equal(at(cm, "data", "OTEL_EXPORTER_OTLP_ENDPOINT"), "http://jaeger:4318");
    assert.ok(find(objs, "Service", "jaeger"));
    assert.ok(objs.every((o) => o.kind === "Namespace" || o.metadata.namespace === "mlmesh-dev"));
  });

  it("prod: replicas, autoscalers and budgets for inference and router, Istio STRICT and deny-by-default", (t) => {
    const objs = kustomize(t, "prod");
    if (!objs) return;
    assert.equal(at(find(objs, "StatefulSet", "inference"), "spec", "replicas"), 3);
    assert.equal(at(find(objs, "StatefulSet", "router"), "spec", "replicas"), 2);
    for (const single of ["registry", "features", "experiments"]) assert.equal(at(find(objs, "StatefulSet", single), "spec", "replicas"), 1, single);
    assert.deepEqual(objs.filter((o) => o.kind === "HorizontalPodAutoscaler").map((o) => at(o, "spec", "scaleTargetRef", "name")).sort(), ["inference", "router"]);
    assert.deepEqual(objs.filter((o) => o.kind === "PodDisruptionBudget").map((o) => o.metadata.name).sort(), ["inference", "router"]);
    assert.equal(at(find(objs, "PeerAuthentication", "default"), "spec", "mtls", "mode"), "STRICT");
    assert.deepEqual(at(find(objs, "AuthorizationPolicy", "deny-by-default"), "spec"), {});
    // Who may call whom: exactly the callers the code has.
    const callers = (svc: string) =>
      (at(find(objs, "AuthorizationPolicy", svc), "spec", "rules", 0, "from", 0, "source", "principals") as string[]).map((p) => p.split("/").pop()).sort();
    assert.deepEqual(callers("registry"), ["inference", "mlmesh-cli", "router"]);
    assert.deepEqual(callers("features"), ["inference", "mlmesh-cli", "router"]);
    assert.deepEqual(callers("inference"), ["mlmesh-cli", "router"]);
    assert.deepEqual(callers("experiments"), ["mlmesh-cli", "router"]);
    assert.deepEqual(callers("router"), ["*"]);
    assert.equal(at(find(objs, "Namespace", "mlmesh"), "metadata", "labels", "istio-injection"), "enabled");
    const cm = objs.find((o) => o.kind === "ConfigMap" && o.metadata.name.startsWith("mlmesh-config"));
    assert.equal(at(cm, "data", "MLMESH_AUTH"), "on");
    // The credentials Secret is required in prod, and no secret value is committed.
    assert.equal(objs.filter((o) => o.kind === "Secret").length, 0);
    assert.equal(at(find(objs, "StatefulSet", "router"), "spec", "template", "spec", "containers", 0, "envFrom", 1, "secretRef", "optional"), false);
  });

  it("dev-mtls: each service presents its own certificate and the probes speak HTTPS", (t) => {
    const objs = kustomize(t, "dev-mtls");
    if (!objs) return;
    for (const svc of ["registry", "features", "inference", "router", "experiments"]) {
      const s = find(objs, "StatefulSet", svc);
      const c = at(s, "spec", "template", "spec", "containers", 0);
      const env = new Map((c.env as { name: string; value?: string }[]).map((e) => [e.name, e.value]));
      assert.equal(env.get("MLMESH_TLS_CERT"), "/etc/mlmesh/tls/tls.crt", svc);
      const vol = (at(s, "spec", "template", "spec", "volumes") as { name: string; secret?: { secretName: string; items: { key: string; path: string }[] } }[]).find((v) => v.name === "tls");
      assert.equal(vol?.secret?.secretName, "mlmesh-tls");
      assert.deepEqual(vol?.secret?.items.map((i) => `${i.key}>${i.path}`), ["ca.crt>ca.crt", `${svc}.crt>tls.crt`, `${svc}.key>tls.key`]);
      for (const probe of ["startupProbe", "livenessProbe", "readinessProbe"]) assert.equal(c[probe].httpGet.scheme, "HTTPS", `${svc} ${probe}`);
    }
    // The CA's private key is never mounted.
    assert.ok(!JSON.stringify(objs).includes("ca.key"));
  });

  it("prod-mesh-canary: weighted canary and a mirrored shadow onto per-version inference subsets", (t) => {
    const objs = kustomize(t, "prod-mesh-canary");
    if (!objs) return;
    const dr = find(objs, "DestinationRule", "inference");
    const subsets = at(dr, "spec", "subsets") as { name: string; labels: Record<string, string> }[];
    assert.deepEqual(subsets.map((s) => [s.name, s.labels["mlmesh.io/model-version"]]), [["v3", "3"], ["v4", "4"], ["v5", "5"]]);
    for (const [name, version] of [["inference", "3"], ["inference-v4", "4"], ["inference-v5", "5"]] as const) {
      const s = find(objs, "StatefulSet", name);
      assert.equal(at(s, "spec", "template", "metadata", "labels", "mlmesh.io/model-version"), version, name);
      assert.equal(at(s, "spec", "template", "metadata", "labels", "app.kubernetes.io/name"), "inference", `${name} is behind the inference Service`);
      const env = at(s, "spec", "template", "spec", "containers", 0, "env") as { name: string; value?: string }[];
      assert.equal(env.find((e) => e.name === "MLMESH_INFERENCE_PRELOAD")?.value, `churn@${version}`);
    }
    const route = at(find(objs, "VirtualService", "inference"), "spec", "http", 0);
    assert.deepEqual(route.route.map((r: { destination: { subset: string }; weight: number }) => [r.destination.subset, r.weight]), [["v3", 90], ["v4", 10]]);
    assert.equal(route.mirror.subset, "v5");
    assert.equal(route.mirrorPercentage.value, 20);
  });
});
