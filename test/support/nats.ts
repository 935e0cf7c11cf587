// A real NATS JetStream server for tests: MLMESH_NATS_URL when set, otherwise a private
// nats-server from PATH on a free port with its own store directory. Never a fake.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { freePort } from "./ports.js";

export interface TestNats {
  readonly url: string;
  /** Only for a server this helper started: SIGKILL it (store kept) and start it again. */
  restart?(): Promise<void>;
  stop(): Promise<void>;
}

function findNatsServer(): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter).concat(["/usr/sbin", "/usr/local/bin"])) {
    const candidate = path.join(dir, "nats-server");
    if (fs.existsSync(candidate)) return candidate;
  }
  return undefined;
}

async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nats-server did not listen on ${port} within ${timeoutMs} ms`);
}

/** A NATS server of our own (for tests that kill it); needs nats-server on PATH. */
export async function startPrivateNats(): Promise<TestNats> {
  const bin = findNatsServer();
  if (!bin) {
    throw new Error(
      "this test needs a NATS server with JetStream: install nats-server (Debian: apt-get install nats-server) or set MLMESH_NATS_URL",
    );
  }
  const port = await freePort();
  const storeDir = fs.mkdtempSync(path.join(os.tmpdir(), "mlmesh-nats-"));
  let proc: ChildProcess | undefined;
  const start = async () => {
    proc = spawn(bin, ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", storeDir], { stdio: "ignore" });
    await waitForPort(port, 10_000);
  };
  await start();
  return {
    url: `nats://127.0.0.1:${port}`,
    restart: async () => {
      proc?.kill("SIGKILL");
      await new Promise((r) => proc?.once("exit", r));
      await start();
    },
    stop: async () => {
      if (proc && proc.exitCode === null) {
        proc.kill("SIGTERM");
        await new Promise((r) => proc?.once("exit", r));
      }
      fs.rmSync(storeDir, { recursive: true, force: true });
    },
  };
}

/** The shared server from MLMESH_NATS_URL, or a private one. */
export async function testNats(): Promise<TestNats> {
  const url = process.env.MLMESH_NATS_URL;
  if (url) return { url, stop: async () => undefined };
  return startPrivateNats();
}

export function hasNatsServerBinary(): boolean {
  return findNatsServer() !== undefined || spawnSync("nats-server", ["--version"]).status === 0;
}
