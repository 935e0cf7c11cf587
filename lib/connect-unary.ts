// The Connect protocol's unary JSON call (POST, `application/json`, no compression) served
// without connect-node's generic handler — the common case on the HTTP port (curl, browsers,
// `wrk` in bench/mesh-vs-fastapi.ts) and the one whose per-call cost connect-node roughly
// doubles (bench/rpc-overhead.ts: Connect JSON vs our gRPC path). The same observer runs
// (span, deadline, guard, metrics, drain accounting), the same handlers, the same JSON
// options (unknown fields refused), errors use Connect's JSON error body and HTTP status
// mapping from @connectrpc/connect/protocol-connect, and large answers are compressed as
// connect-node would. Everything else — GET requests, compressed requests, binary protobuf,
// streams — is left to connect-node (the caller falls back when `serve` returns false).
// Types with a hand-written JSON codec (lib/fast-json-codecs.ts, e.g. the router's Predict)
// skip protobuf-es's reflective fromJson/toJsonString; their bytes are the same.

import type http from "node:http";
import { promisify } from "node:util";
import zlib from "node:zlib";
import { create, fromJson, isMessage, toJsonString, type DescMessage, type DescMethod, type DescService, type JsonValue } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { codeToHttpStatus, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { context } from "@opentelemetry/api";
import { jsonDecoder, jsonEncoder } from "./fast-json-codecs.js";
import { LightHandlerContext } from "./light-handler-context.js";
import { PRINCIPAL_VALUE } from "./principal.js";
import { requestTimeoutMs, type CallObserver } from "./rpc-observe.js";
import { remainingMs } from "./telemetry.js";

interface UnaryEntry {
  readonly service: DescService;
  readonly method: DescMethod;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly impl: (req: any, ctx: LightHandlerContext) => any;
}

export interface ConnectUnaryOptions {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly bindings: ReadonlyArray<{ service: DescService; impl: Record<string, (...args: any[]) => any> }>;
  readonly observe: CallObserver;
  readonly maxMessageBytes: number;
  readonly shutdownSignal: AbortSignal;
}

const JSON_HEADERS = { "content-type": "application/json" } as const;
/** connect-node's default compressMinBytes. */
const COMPRESS_MIN_BYTES = 1024;
const gzip = promisify(zlib.gzip);
const brotli = promisify(zlib.brotliCompress);

/** The first of the client's accepted encodings that connect-node would use too (gzip, br). */
function negotiate(accept: string | undefined): "gzip" | "br" | undefined {
  if (!accept) return undefined;
  for (const part of accept.split(",")) {
    const name = part.split(";")[0]!.trim().toLowerCase();
    if (name === "gzip" || name === "br") return name;
  }
  return undefined;
}

/** True for `application/json` with at most a utf-8 charset parameter. */
function isPlainJson(ct: string | undefined): boolean {
  if (ct === "application/json") return true;
  return ct !== undefined && /^application\/json;\s*charset=utf-8$/i.test(ct);
}

/**
 * Returns `serve(req, res)`: true when it took the request (and will answer it), false when
 * connect-node should handle it.
 */
export function createConnectUnaryJson(opts: ConnectUnaryOptions): (req: http.IncomingMessage, res: http.ServerResponse) => boolean {
  const entries = new Map<string, UnaryEntry>();
  for (const b of opts.bindings) {
    for (const method of b.service.methods) {
      const impl = b.impl[method.localName];
      if (method.methodKind !== "unary" || !impl) continue;
      entries.set(`/${b.service.typeName}/${method.name}`, { service: b.service, method, impl });
    }
  }

  return (req, res) => {
    if (req.method !== "POST") return false;
    const h = req.headers;
    if (!isPlainJson(h["content-type"]) || h["content-encoding"] !== undefined || h["connect-content-encoding"] !== undefined) return false;
    const entry = entries.get(req.url ?? "");
    if (!entry) return false;

    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > opts.maxMessageBytes) tooLarge = true;
      else chunks.push(c);
    });
    req.on("end", () => {
      void answer(entry, req, res, chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks), tooLarge ? size : undefined);
    });
    req.on("error", () => res.destroy());
    return true;
  };

  async function answer(entry: UnaryEntry, req: http.IncomingMessage, res: http.ServerResponse, body: Buffer, oversize: number | undefined): Promise<void> {
    const started = Date.now();
    const header = { get: (k: string) => headerValue(req, k) };
    const asked = requestTimeoutMs(header);
    const call = opts.observe(entry.service.typeName, entry.method.name, header, asked);
    // The observer put the effective deadline (the caller's, capped by the server's) in call.ctx.
    const deadline = Date.now() + (remainingMs(call.ctx) ?? asked ?? 300_000);
    const ctx = new LightHandlerContext(entry.service, entry.method, "connect", () => headerPairs(req), deadline);
    if (call.principal) ctx.values.set(PRINCIPAL_VALUE, call.principal);

    let settled = false;
    const fail = (err: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const mapped = call.finish(err) ?? new ConnectError(String(err), Code.Internal);
      ctx.abort(mapped);
      if (res.writableEnded || res.destroyed) return;
      const bytes = errorToJsonBytes(mapped, {});
      const headers: Record<string, string | number> = { ...JSON_HEADERS, "content-length": bytes.byteLength };
      mapped.metadata.forEach((v, k) => (headers[k] = v));
      res.writeHead(codeToHttpStatus(mapped.code), headers).end(bytes);
    };
    const succeed = async (json: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      call.finish();
      if (res.writableEnded || res.destroyed) return;
      const headers: Record<string, string | number> = { ...JSON_HEADERS };
      ctx.setResponseHeader?.forEach((v, k) => (headers[k] = v));
      ctx.setResponseTrailer?.forEach((v, k) => (headers[`trailer-${k}`] = v));
      // As connect-node: answers of 1 KiB or more are compressed when the client accepts it.
      let body: Buffer | string = json;
      const encoding = json.length >= COMPRESS_MIN_BYTES ? negotiate(req.headers["accept-encoding"]) : undefined;
      if (encoding) {
        body = await (encoding === "gzip" ? gzip(json) : brotli(json));
        headers["content-encoding"] = encoding;
      }
      headers["content-length"] = Buffer.byteLength(body);
      if (!res.writableEnded && !res.destroyed) res.writeHead(200, headers).end(body);
    };
    // The server enforces the deadline itself: a handler still running past it is abandoned.
    const timer = setTimeout(() => fail(new ConnectError(`deadline exceeded after ${Math.round(deadline - started)} ms`, Code.DeadlineExceeded)), Math.max(0, deadline - Date.now()));
    res.once("close", () => {
      if (!settled) fail(new ConnectError("the client went away", Code.Canceled));
    });

    if (call.rejected) return fail(call.rejected);
    if (oversize !== undefined) return fail(new ConnectError(`message size ${oversize} is larger than the configured ${opts.maxMessageBytes} bytes`, Code.ResourceExhausted));
    if (opts.shutdownSignal.aborted) return fail(new ConnectError("server is shutting down", Code.Unavailable));

    const input = entry.method.input as DescMessage;
    let request;
    try {
      const text = body.length === 0 ? "{}" : body.toString("utf8");
      // A hand-written decoder where the type has one (lib/fast-json-codecs.ts); it leaves
      // whatever it does not read exactly, every bad input included, to fromJson.
      const decode = jsonDecoder(input.typeName);
      request = (decode && decode(text)) ?? fromJson(input, JSON.parse(text) as JsonValue, { ignoreUnknownFields: false });
    } catch (err) {
      return fail(new ConnectError(`cannot decode message ${input.typeName} from JSON: ${(err as Error).message}`, Code.InvalidArgument));
    }
    try {
      const output = await context.with(call.ctx, () => entry.impl(request, ctx));
      if (settled) return;
      const schema = entry.method.output as DescMessage;
      const message = isMessage(output, schema) ? output : create(schema, output);
      const encode = jsonEncoder(schema.typeName);
      await succeed((encode && encode(message)) ?? toJsonString(schema, message));
    } catch (err) {
      fail(err);
    }
  }
}

function headerValue(req: http.IncomingMessage, key: string): string | undefined {
  const v = req.headers[key];
  return typeof v === "string" ? v : v?.[0];
}

function* headerPairs(req: http.IncomingMessage): Iterable<[string, string]> {
  for (const [k, v] of Object.entries(req.headers)) {
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const x of v) yield [k, x];
    else yield [k, v];
  }
}
