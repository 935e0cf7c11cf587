// `mlmesh certs dev`: a development CA and one certificate per service (plus "mesh" for
// `mlmesh up`, which serves all five from one process, and "client" for the CLI), for the
// mTLS that MLMESH_TLS_CA/CERT/KEY turn on. node:crypto cannot issue X.509 certificates, so
// this drives the `openssl` command (OpenSSL 1.1.1 or later, for -addext). Keys are EC P-256,
// written with mode 0600. An existing CA in the directory is reused, so certificates issued
// later still chain to the CA every peer already trusts; --force makes a new one.

import { execFile } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { SERVICE_NAMES, type Config } from "../lib/config.js";
import { EXIT, printJson, printTable, UsageError } from "./output.js";

const USAGE = `Usage: mlmesh certs dev [--out DIR] [--services a,b,...] [--san NAME,...] [--days N] [--force] [--json]
  Development CA (ca.crt, ca.key) and per-service certificates (<name>.crt, <name>.key) in DIR
  (default <MLMESH_DATA_DIR>/certs). --services defaults to the five services; "mesh" (all
  service names, for \`mlmesh up\`) and "client" (for the CLI) are always issued. Every
  certificate is valid for server and client authentication with the SANs <name>, localhost,
  127.0.0.1, ::1 and each --san (a DNS name or an IP address).
  Then: MLMESH_TLS_CA=DIR/ca.crt MLMESH_TLS_CERT=DIR/<name>.crt MLMESH_TLS_KEY=DIR/<name>.key`;

function openssl(args: readonly string[], cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile("openssl", [...args], { cwd, timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) {
        const missing = (err as NodeJS.ErrnoException).code === "ENOENT";
        reject(new Error(missing ? "`openssl` was not found on PATH; mlmesh certs needs it to issue certificates" : `openssl ${args[0]} failed: ${stderr.trim() || err.message}`));
      } else resolve(stdout);
    });
  });
}

const DNS_RE = /^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$/;
const NAME_RE = /^[a-z][a-z0-9-]{0,62}$/;

function sanEntry(s: string): string {
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(s) || s.includes(":")) return `IP:${s}`;
  if (DNS_RE.test(s) || /^\*\.[A-Za-z0-9.-]+$/.test(s)) return `DNS:${s}`;
  throw new UsageError(`--san ${JSON.stringify(s)} is neither a DNS name nor an IP address`);
}

async function exists(p: string): Promise<boolean> {
  return fs.access(p).then(
    () => true,
    () => false,
  );
}

export async function runCerts(config: Config, args: readonly string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === "help" || sub === "--help" || sub === "-h") {
    process.stdout.write(`${USAGE}\n`);
    return sub === undefined ? EXIT.USAGE : EXIT.OK;
  }
  if (sub !== "dev") throw new UsageError(`unknown certs command ${JSON.stringify(sub)}\n${USAGE}`);
  let values: { out?: string; services?: string; san?: string; days?: string; force?: boolean; json?: boolean };
  try {
    values = parseArgs({
      args: [...rest],
      options: { out: { type: "string" }, services: { type: "string" }, san: { type: "string" }, days: { type: "string" }, force: { type: "boolean" }, json: { type: "boolean" } },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${USAGE}`);
  }
  const out = path.resolve(values.out ?? path.join(config.dataDir, "certs"));
  const services = values.services ? values.services.split(",").map((s) => s.trim()).filter(Boolean) : [...SERVICE_NAMES];
  for (const s of services) if (!NAME_RE.test(s)) throw new UsageError(`--services: ${JSON.stringify(s)} is not a service name (lowercase letters, digits, -)`);
  const days = values.days === undefined ? 365 : Number(values.days);
  if (!Number.isInteger(days) || days < 1 || days > 3650) throw new UsageError("--days must be an integer between 1 and 3650");
  const extraSans = (values.san ?? "").split(",").map((s) => s.trim()).filter(Boolean).map(sanEntry);

  await fs.mkdir(out, { recursive: true, mode: 0o700 });
  const caKey = path.join(out, "ca.key");
  const caCrt = path.join(out, "ca.crt");
  const reuseCa = !values.force && (await exists(caKey)) && (await exists(caCrt));
  if (!reuseCa) {
    await openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", caKey], out);
    await fs.chmod(caKey, 0o600);
    await openssl(
      ["req", "-x509", "-new", "-key", caKey, "-sha256", "-days", String(days), "-subj", "/O=mlmesh/CN=mlmesh development CA",
        "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0", "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", caCrt],
      out,
    );
  }

  const names = [...new Set([...services, "mesh", "client"])];
  const issued: Array<{ name: string; cert: string; key: string; sans: string }> = [];
  for (const name of names) {
    const key = path.join(out, `${name}.key`);
    const crt = path.join(out, `${name}.crt`);
    const csr = path.join(out, `${name}.csr`);
    const ext = path.join(out, `${name}.ext`);
    const own = name === "mesh" ? services.map((s) => `DNS:${s}`) : name === "client" ? [] : [`DNS:${name}`];
    const sans = [...new Set([...own, "DNS:localhost", "IP:127.0.0.1", "IP:::1", ...extraSans])].join(",");
    await openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key], out);
    await fs.chmod(key, 0o600);
    await openssl(["req", "-new", "-key", key, "-subj", `/O=mlmesh/CN=${name}`, "-out", csr], out);
    await fs.writeFile(
      ext,
      `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=${sans}\n`,
    );
    await openssl(
      ["x509", "-req", "-in", csr, "-CA", caCrt, "-CAkey", caKey, "-set_serial", `0x${crypto.randomBytes(16).toString("hex")}`, "-days", String(days), "-sha256", "-extfile", ext, "-out", crt],
      out,
    );
    await Promise.all([fs.rm(csr, { force: true }), fs.rm(ext, { force: true })]);
    issued.push({ name, cert: crt, key, sans });
  }

  if (values.json) {
    printJson({ dir: out, ca: caCrt, caReused: reuseCa, certificates: issued });
  } else {
    printTable(issued.map((i) => ({ name: i.name, cert: i.cert, sans: i.sans })), ["name", "cert", "sans"]);
    process.stdout.write(
      `\nCA: ${caCrt}${reuseCa ? " (reused; --force for a new one)" : ""}\nUse, e.g. for \`mlmesh up\`:\n  MLMESH_TLS_CA=${caCrt} MLMESH_TLS_CERT=${path.join(out, "mesh.crt")} MLMESH_TLS_KEY=${path.join(out, "mesh.key")}\n`,
    );
  }
  return EXIT.OK;
}
