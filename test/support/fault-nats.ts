// A nats-server (JetStream) of the test's own that can be SIGKILLed and brought back on the
// same port with the same store, for outage scenarios. Never the machine's shared server.
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { freePort } from "./ports.js";

function natsBinary(): string {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter).concat(["/usr/sbin", "/usr/local/bin"])) {
    const c = path.join(dir, "nats-server");
    if (fs.existsSync(c)) return c;
  }
  throw new Error("this test needs nats-server on PATH (Debian: apt-get install nats-server)");
}

export function hasNatsBinary(): boolean {
  try {
    natsBinary();
    return true;
  } catch {
    return false;
  }
}

async function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1", () => (s.destroy(), resolve(true)));
    s.once("error", () => resolve(false));
  });
}

export class FaultNats {
  private proc: ChildProcess | undefined;
  private constructor(
    readonly port: number,
    readonly storeDir: string,
  ) {}

  static async start(): Promise<FaultNats> {
    const n = new FaultNats(await freePort(), fs.mkdtempSync(path.join(os.tmpdir(), "mlmesh-fault-nats-")));
    await n.up();
    return n;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** Start (again) on the same port and store. */
  async up(timeoutMs = 15_000): Promise<void> {
    this.proc = spawn(natsBinary(), ["-a", "127.0.0.1", "-p", String(this.port), "-js", "-sd", this.storeDir], { stdio: "ignore" });
    const deadline = Date.now() + timeoutMs;
    while (!(await listening(this.port))) {
      if (Date.now() > deadline) throw new Error(`nats-server did not listen on ${this.port}`);
      if (this.proc.exitCode !== null) throw new Error(`nats-server exited with ${this.proc.exitCode}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** SIGKILL: no flush, no goodbye to clients; the store stays on disk. */
  async kill(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once("exit", r));
    p.kill("SIGKILL");
    await exited;
  }

  async dispose(): Promise<void> {
    const p = this.proc;
    if (p && p.exitCode === null && p.signalCode === null) {
      const exited = new Promise((r) => p.once("exit", r));
      p.kill("SIGTERM");
      await exited;
    }
    fs.rmSync(this.storeDir, { recursive: true, force: true });
  }
}
