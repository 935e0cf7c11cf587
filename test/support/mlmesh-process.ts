// Runs the real `mlmesh` command as a child process (what a user or Kubernetes runs) and
// waits until it prints its endpoints.
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { freePorts } from "./ports.js";

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const MLMESH_BIN = path.join(REPO_ROOT, "bin", "mlmesh.mjs");

export interface ServiceEndpoint {
  readonly service: string;
  readonly grpc: string;
  readonly http: string;
}

export interface MlmeshProcess {
  readonly proc: ChildProcess;
  readonly services: readonly ServiceEndpoint[];
  readonly events: string;
  readonly dataDir: string;
  endpoint(service: string): ServiceEndpoint;
  /** Everything the process wrote to stderr (its JSON logs). */
  stderr(): string;
  /** Send a signal and resolve with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

const SERVICES = ["registry", "features", "inference", "router", "experiments"];

/** Environment giving every service free ports and a private data dir. */
export async function isolatedEnv(extra: Record<string, string> = {}): Promise<Record<string, string>> {
  const ports = await freePorts(SERVICES.length * 2);
  const env: Record<string, string> = {
    MLMESH_DATA_DIR: fs.mkdtempSync(path.join(os.tmpdir(), "mlmesh-data-")),
    MLMESH_LOG_LEVEL: "info",
  };
  SERVICES.forEach((s, i) => {
    env[`MLMESH_${s.toUpperCase()}_GRPC_PORT`] = String(ports[2 * i]);
    env[`MLMESH_${s.toUpperCase()}_HTTP_PORT`] = String(ports[2 * i + 1]);
  });
  return { ...env, ...extra };
}

export async function startMlmesh(args: string[], env: Record<string, string>, timeoutMs = 30_000): Promise<MlmeshProcess> {
  const base = { ...process.env };
  // The child gets only what the test decides, not the outer NATS setting unless passed.
  delete base.MLMESH_NATS_URL;
  const proc = spawn(process.execPath, [MLMESH_BIN, ...args, "--json"], {
    cwd: REPO_ROOT,
    env: { ...base, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  proc.stderr!.on("data", (d) => (err += d));
  const info = await new Promise<{ services: ServiceEndpoint[]; events: string }>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`mlmesh ${args.join(" ")} did not start in ${timeoutMs} ms; stderr:\n${err}`));
    }, timeoutMs);
    proc.stdout!.on("data", (d) => {
      out += d;
      const line = out.split("\n").find((l) => l.startsWith("{"));
      if (line) {
        clearTimeout(timer);
        resolve(JSON.parse(line));
      }
    });
    proc.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`mlmesh ${args.join(" ")} exited with ${code} before starting; stderr:\n${err}`));
    });
  });
  return {
    proc,
    services: info.services,
    events: info.events,
    dataDir: env.MLMESH_DATA_DIR ?? "",
    endpoint(service) {
      const e = info.services.find((s) => s.service === service);
      if (!e) throw new Error(`service ${service} is not running in this process`);
      return e;
    },
    stderr: () => err,
    stop(signal = "SIGTERM") {
      if (proc.exitCode !== null) return Promise.resolve(proc.exitCode);
      return new Promise((resolve) => {
        proc.once("exit", (code) => resolve(code));
        proc.kill(signal);
      });
    },
  };
}
