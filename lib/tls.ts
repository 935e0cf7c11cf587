// mTLS material and credentials. The files named by MLMESH_TLS_CA/CERT/KEY are read once at
// start (never on the request path); the same certificate serves (both ports) and calls out
// (mesh clients), so one certificate per service is all a deployment needs.

import fs from "node:fs";
import * as grpc from "@grpc/grpc-js";
import type { TlsFiles } from "./config-security.js";

export interface TlsMaterial {
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
}

const loaded = new Map<string, TlsMaterial>();

/** Read (once per process) the CA, certificate and key PEM files. */
export function loadTls(files: TlsFiles): TlsMaterial {
  const id = `${files.caFile}\0${files.certFile}\0${files.keyFile}`;
  let m = loaded.get(id);
  if (!m) {
    m = Object.freeze({ ca: fs.readFileSync(files.caFile), cert: fs.readFileSync(files.certFile), key: fs.readFileSync(files.keyFile) });
    loaded.set(id, m);
  }
  return m;
}

/** gRPC server credentials that require a client certificate signed by the CA. */
export function grpcServerCredentials(m: TlsMaterial): grpc.ServerCredentials {
  return grpc.ServerCredentials.createSsl(m.ca, [{ private_key: m.key, cert_chain: m.cert }], true);
}

/** gRPC channel credentials presenting our certificate and trusting only the CA. */
export function grpcChannelCredentials(m: TlsMaterial): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(m.ca, m.key, m.cert);
}
