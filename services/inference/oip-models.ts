// Model-level Open Inference Protocol v2 (KServe/Triton): ModelReady, ModelMetadata and
// ModelInfer over gRPC, and the REST routes `/v2/models/{m}[/versions/{v}][/ready|/infer]`.

import { randomUUID } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { GRPCInferenceService, ModelInferRequest, ModelInferResponseSchema } from "../../gen/inference/grpc_service_pb.js";
import { DomainError, NotFoundError, ValidationError } from "../../lib/errors.js";
import type { HttpRoute } from "../../lib/server.js";
import type { InferenceEngine } from "./engine.js";
import type { LoadedVersion, ModelLoader } from "./loader.js";
import type { PredictionLog } from "./prediction-log.js";
import { feedsFromDense, rowOutputs } from "./score.js";
import { callDeadline } from "./service.js";
import { BYTES_PER_ELEMENT, DTYPE_OF_OIP, fromRawBytes, OIP_DATATYPE, product, toRawBytes, type DenseTensor, type DType, type TypedData } from "./tensors.js";

export const OIP_PLATFORM = "onnx_onnxv1";

interface Deps {
  readonly loader: ModelLoader;
  readonly engine: InferenceEngine;
  readonly predictionLog?: PredictionLog;
}

/** OIP names a model and optionally a version; a name may also be a full ref (`churn@champion`). */
async function acquire(loader: ModelLoader, name: string, version: string): Promise<LoadedVersion> {
  if (!name) throw new ValidationError("model_name", "required");
  if (version) {
    if (!/^\d+$/.test(version)) throw new ValidationError("model_version", `"${version}" is not a version number`);
    return loader.acquire(`${name.split("@")[0]}@${version}`);
  }
  if (name.includes("@")) return loader.acquire(name);
  try {
    return await loader.acquire(`${name}@production`);
  } catch (err) {
    // No production version yet: the newest version is the server's choice.
    if (err instanceof NotFoundError) return loader.acquire(`${name}@latest`);
    throw err;
  }
}

function metadata(v: LoadedVersion) {
  const t = (s: LoadedVersion["inputs"][number]) => ({ name: s.name, datatype: OIP_DATATYPE[s.type], shape: s.dims.map(BigInt) });
  return { name: v.name, versions: [String(v.version)], platform: OIP_PLATFORM, inputs: v.inputs.map(t), outputs: v.outputs.map(t) };
}

interface OipInput {
  name: string;
  datatype: string;
  shape: number[];
  values: TypedData | ArrayLike<number | bigint | boolean>;
}

function dtypeOf(datatype: string, field: string): DType {
  const t = DTYPE_OF_OIP[datatype];
  if (!t) throw new ValidationError(field, `datatype "${datatype}" is not supported (FP32, FP64, INT32, INT64, BOOL)`);
  return t;
}

/** The inputs of a gRPC ModelInferRequest: typed `contents`, or `raw_input_contents` for all of them. */
function grpcInputs(req: ModelInferRequest): OipInput[] {
  const raw = req.rawInputContents;
  if (raw.length > 0 && raw.length !== req.inputs.length) {
    throw new ValidationError("raw_input_contents", `${raw.length} raw contents for ${req.inputs.length} inputs; give one per input or none`);
  }
  return req.inputs.map((t, i) => {
    const field = `inputs[${i}]`;
    const type = dtypeOf(t.datatype, `${field}.datatype`);
    const shape = t.shape.map(Number);
    if (raw.length > 0) {
      const need = product(shape) * BYTES_PER_ELEMENT[type];
      if (raw[i]!.length !== need) throw new ValidationError(`raw_input_contents[${i}]`, `input "${t.name}" is ${raw[i]!.length} bytes, expected ${need} for ${t.datatype} [${shape.join(", ")}]`);
      return { name: t.name, datatype: t.datatype, shape, values: fromRawBytes(type, raw[i]!) };
    }
    const c = t.contents;
    const values = { float32: c?.fp32Contents, float64: c?.fp64Contents, int32: c?.intContents, int64: c?.int64Contents, bool: c?.boolContents }[type] ?? [];
    return { name: t.name, datatype: t.datatype, shape, values };
  });
}

async function infer(deps: Deps, name: string, version: string, inputs: OipInput[], requested: string[], deadline: number, requestId?: string) {
  const started = performance.now();
  const v = await acquire(deps.loader, name, version);
  let feeds: Record<string, DenseTensor> | undefined;
  const r = await deps.engine.run(
    v,
    (ver, limits) => {
      const built = feedsFromDense(
        ver,
        inputs.map((t, i) => ({ name: t.name, type: dtypeOf(t.datatype, `inputs[${i}].datatype`), dims: t.shape, values: t.values })),
        (i) => `inputs[${i}]`,
        limits,
      );
      feeds = built.feeds;
      return built;
    },
    deadline,
    requested.length > 0 ? requested : undefined,
  );
  if (deps.predictionLog) {
    const outs = r.outputs;
    deps.predictionLog.log({
      requestId: requestId || randomUUID(),
      modelName: v.name,
      version: v.version,
      latencyUs: (performance.now() - started) * 1000,
      timeMs: Date.now(),
      feeds,
      rowCount: r.rows,
      binding: v.binding,
      // Built on the log's own tick, not for the response.
      outputs: () => rowOutputs(outs, r.rows, []),
    });
  }
  const names = requested.length > 0 ? requested : Object.keys(r.outputs);
  return { v, outputs: names.map((n) => ({ name: n, tensor: r.outputs[n]! })) };
}

function contentsOf(t: DenseTensor) {
  const d = t.data;
  switch (t.type) {
    case "float32":
      return { fp32Contents: Array.from(d as Float32Array) };
    case "float64":
      return { fp64Contents: Array.from(d as Float64Array) };
    case "int32":
      return { intContents: Array.from(d as Int32Array) };
    case "int64":
      return { int64Contents: Array.from(d as BigInt64Array) };
    case "bool":
      return { boolContents: Array.from(d as Uint8Array, (x) => x !== 0) };
  }
}

export function createOipModelService(deps: Deps): Partial<ServiceImpl<typeof GRPCInferenceService>> {
  return {
    async modelReady(req) {
      try {
        await acquire(deps.loader, req.name, req.version);
        return { ready: true };
      } catch (err) {
        if (err instanceof NotFoundError || err instanceof ValidationError) throw err;
        return { ready: false };
      }
    },
    async modelMetadata(req) {
      return metadata(await acquire(deps.loader, req.name, req.version));
    },
    async modelInfer(req) {
      const raw = req.rawInputContents.length > 0;
      const { v, outputs } = await infer(deps, req.modelName, req.modelVersion, grpcInputs(req), req.outputs.map((o) => o.name), callDeadline(), req.id);
      const res: MessageInitShape<typeof ModelInferResponseSchema> = {
        modelName: v.name,
        modelVersion: String(v.version),
        id: req.id,
        outputs: outputs.map(({ name, tensor }) => ({
          name,
          datatype: OIP_DATATYPE[tensor.type],
          shape: tensor.dims.map(BigInt),
          contents: raw ? undefined : contentsOf(tensor),
        })),
        rawOutputContents: raw ? outputs.map(({ tensor }) => Uint8Array.from(toRawBytes(tensor.data))) : [],
      };
      return res;
    },
  };
}

// ---- REST ---------------------------------------------------------------------------------

const HTTP_STATUS: Partial<Record<Code, number>> = {
  [Code.InvalidArgument]: 400,
  [Code.NotFound]: 404,
  [Code.FailedPrecondition]: 400,
  [Code.DeadlineExceeded]: 504,
  [Code.Unavailable]: 503,
};

function sendJson(res: import("node:http").ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, (_k, x) => (typeof x === "bigint" ? Number(x) : x));
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) }).end(text);
}

function flatten(data: unknown, field: string): Array<number | boolean> {
  if (!Array.isArray(data)) throw new ValidationError(field, "data must be an array");
  return (data as unknown[]).flat(Infinity) as Array<number | boolean>;
}

async function readBody(req: import("node:http").IncomingMessage, limit: number): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > limit) throw new ValidationError("body", `larger than ${limit} bytes`);
    chunks.push(c as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    throw new ValidationError("body", "not valid JSON");
  }
}

const ROUTE = /^\/v2\/models\/([^/]+)(?:\/versions\/([^/]+))?(\/ready|\/infer)?$/;

/** `/v2/models/{m}` (metadata), `/ready`, `/infer`, each also under `/versions/{v}`. */
export function oipModelRestRoutes(deps: Deps & { maxBodyBytes: number; maxDeadlineMs: number }): HttpRoute {
  return async (req, res) => {
    const m = ROUTE.exec(req.url?.split("?")[0] ?? "");
    if (!m) return false;
    const name = decodeURIComponent(m[1]!);
    const version = m[2] ? decodeURIComponent(m[2]) : "";
    const action = m[3];
    try {
      if (action === "/infer") {
        if (req.method !== "POST") return false;
        const body = (await readBody(req, deps.maxBodyBytes)) as { id?: string; inputs?: Array<{ name: string; datatype: string; shape: number[]; data: unknown }>; outputs?: Array<{ name: string }> };
        if (!body || !Array.isArray(body.inputs)) throw new ValidationError("inputs", "required: an array of {name, shape, datatype, data}");
        const inputs = body.inputs.map((t, i) => {
          const type = dtypeOf(t.datatype, `inputs[${i}].datatype`);
          const values = flatten(t.data, `inputs[${i}].data`);
          return { name: t.name, datatype: t.datatype, shape: (t.shape ?? []).map(Number), values: type === "int64" ? values.map((x) => BigInt(x as number)) : values };
        });
        const { v, outputs } = await infer(deps, name, version, inputs, (body.outputs ?? []).map((o) => o.name), Date.now() + deps.maxDeadlineMs, body.id);
        sendJson(res, 200, {
          model_name: v.name,
          model_version: String(v.version),
          ...(body.id ? { id: body.id } : {}),
          outputs: outputs.map(({ name: n, tensor }) => ({
            name: n,
            datatype: OIP_DATATYPE[tensor.type],
            shape: tensor.dims,
            data: tensor.type === "bool" ? Array.from(tensor.data as Uint8Array, (x) => x !== 0) : Array.from(tensor.data as ArrayLike<number | bigint>, Number),
          })),
        });
        return true;
      }
      if (req.method !== "GET") return false;
      if (action === "/ready") {
        let ready = true;
        try {
          await acquire(deps.loader, name, version);
        } catch (err) {
          if (err instanceof NotFoundError || err instanceof ValidationError) throw err;
          ready = false;
        }
        sendJson(res, ready ? 200 : 503, { name, ready });
        return true;
      }
      sendJson(res, 200, metadata(await acquire(deps.loader, name, version)));
      return true;
    } catch (err) {
      const code = err instanceof DomainError ? err.code : err instanceof ConnectError ? err.code : Code.Internal;
      const message = err instanceof DomainError ? err.message : err instanceof ConnectError ? err.rawMessage : "internal error";
      sendJson(res, HTTP_STATUS[code] ?? 500, { error: message });
      return true;
    }
  };
}
