// Shared pieces of the fault scenarios: a service run as its own `mlmesh serve <svc>` process
// that can be SIGKILLed and started again with the same ports and data dir, and a steady
// client load that counts every call's outcome.

import { ConnectError } from "@connectrpc/connect";
import { isolatedEnv, startMlmesh, type MlmeshProcess } from "../support/mlmesh-process.js";

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One service in its own process; `env` is fixed at creation so a restart reuses ports and data. */
export class ServiceProcess {
  private current: MlmeshProcess | undefined;
  private constructor(
    readonly service: string,
    readonly env: Record<string, string>,
  ) {}

  static async create(service: string, extra: Record<string, string>): Promise<ServiceProcess> {
    const s = new ServiceProcess(service, await isolatedEnv({ MLMESH_LOG_LEVEL: "warn", ...extra }));
    await s.start();
    return s;
  }

  get proc(): MlmeshProcess {
    if (!this.current) throw new Error(`${this.service} is not running`);
    return this.current;
  }
  get grpc(): string {
    return this.proc.endpoint(this.service).grpc;
  }
  get http(): string {
    return this.proc.endpoint(this.service).http;
  }
  get dataDir(): string {
    return this.env.MLMESH_DATA_DIR!;
  }
  /** The address other processes reach it at, known before it starts. */
  get address(): string {
    return `http://127.0.0.1:${this.env[`MLMESH_${this.service.toUpperCase()}_GRPC_PORT`]}`;
  }

  async start(): Promise<void> {
    // A port just freed by a killed process can take a moment to bind again.
    for (let attempt = 0; ; attempt++) {
      try {
        this.current = await startMlmesh(["serve", this.service], this.env, 60_000);
        return;
      } catch (err) {
        if (attempt >= 3 || !/EADDRINUSE|address already in use/i.test(String(err))) throw err;
        await sleep(500);
      }
    }
  }

  async kill(): Promise<void> {
    await this.current?.stop("SIGKILL");
    this.current = undefined;
  }

  async stop(): Promise<void> {
    await this.current?.stop("SIGTERM");
    this.current = undefined;
  }
}

/** The five services, each its own process, wired to each other and to one NATS. */
export interface MeshProcesses {
  readonly registry: ServiceProcess;
  readonly features: ServiceProcess;
  readonly experiments: ServiceProcess;
  readonly inference: ServiceProcess;
  readonly router: ServiceProcess;
}

export async function startMeshProcesses(natsUrl: string): Promise<MeshProcesses> {
  const env = { MLMESH_NATS_URL: natsUrl };
  const registry = await ServiceProcess.create("registry", env);
  const features = await ServiceProcess.create("features", env);
  const experiments = await ServiceProcess.create("experiments", env);
  const inference = await ServiceProcess.create("inference", { ...env, MLMESH_REGISTRY_ADDR: registry.address });
  const router = await ServiceProcess.create("router", {
    ...env,
    MLMESH_REGISTRY_ADDR: registry.address,
    MLMESH_FEATURES_ADDR: features.address,
    MLMESH_INFERENCE_ADDR: inference.address,
    MLMESH_EXPERIMENTS_ADDR: experiments.address,
  });
  return { registry, features, experiments, inference, router };
}

export interface LoadStats {
  readonly ok: number;
  readonly failed: number;
  readonly failures: Record<string, number>;
  readonly maxMs: number;
  readonly p99Ms: number;
}

/** `concurrency` loops calling `fn(i)` back to back (with `pauseMs` between calls) until stopped. */
export class SteadyLoad {
  private running = true;
  private next = 0;
  private ok = 0;
  private failed = 0;
  private readonly failures: Record<string, number> = {};
  private readonly latencies: number[] = [];
  private readonly loops: Promise<void>[];

  constructor(fn: (i: number) => Promise<void>, concurrency: number, pauseMs: number) {
    this.loops = Array.from({ length: concurrency }, async () => {
      while (this.running) {
        const i = this.next++;
        const t0 = performance.now();
        try {
          await fn(i);
          this.ok++;
        } catch (err) {
          this.failed++;
          const e = ConnectError.from(err);
          const key = `${e.code}: ${e.rawMessage.slice(0, 120)}`;
          this.failures[key] = (this.failures[key] ?? 0) + 1;
        }
        this.latencies.push(performance.now() - t0);
        if (pauseMs > 0) await sleep(pauseMs);
      }
    });
  }

  snapshot(): { ok: number; failed: number } {
    return { ok: this.ok, failed: this.failed };
  }

  async stop(): Promise<LoadStats> {
    this.running = false;
    await Promise.all(this.loops);
    const sorted = [...this.latencies].sort((a, b) => a - b);
    return {
      ok: this.ok,
      failed: this.failed,
      failures: { ...this.failures },
      maxMs: sorted.at(-1) ?? 0,
      p99Ms: sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))] ?? 0,
    };
  }
}

/** Poll `fn` until it returns true (or the time is up). */
export async function until(fn: () => boolean | Promise<boolean>, timeoutMs: number, stepMs = 200): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await fn()) return true;
    if (Date.now() > deadline) return false;
    await sleep(stepMs);
  }
}
