// Raw Connect-protocol calls over HTTP/1.1 with JSON bodies (what curl sends), so a test can
// put any text on the wire and read the code the server answers with.

export interface ConnectOutcome {
  /** Connect code name (invalid_argument, ...), "ok", or "http_<status>" when the body is not a Connect error. */
  readonly code: string;
  readonly message: string;
  readonly httpStatus: number;
  readonly ms: number;
}

function envelope(flags: number, text: string): Buffer {
  const body = Buffer.from(text, "utf8");
  const head = Buffer.alloc(5);
  head.writeUInt8(flags, 0);
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

function errorOf(json: unknown): { code: string; message: string } | undefined {
  if (json && typeof json === "object" && "code" in json && typeof (json as { code: unknown }).code === "string") {
    const j = json as { code: string; message?: string };
    return { code: j.code, message: j.message ?? "" };
  }
  return undefined;
}

/** POST `frames` (JSON texts) to `${httpUrl}/${path}`; streaming methods use Connect's enveloped form. */
export async function connectJsonCall(httpUrl: string, path: string, streaming: boolean, frames: readonly string[], timeoutMs: number): Promise<ConnectOutcome> {
  const started = performance.now();
  const body = streaming ? Buffer.concat(frames.map((f) => envelope(0, f))) : Buffer.from(frames[0] ?? "", "utf8");
  let res: Response;
  try {
    res = await fetch(`${httpUrl}${path}`, {
      method: "POST",
      headers: { "content-type": streaming ? "application/connect+json" : "application/json", "connect-protocol-version": "1", "connect-timeout-ms": String(timeoutMs) },
      body,
      signal: AbortSignal.timeout(timeoutMs + 5000),
    });
  } catch (err) {
    return { code: (err as Error).name === "TimeoutError" ? "client_timeout" : "transport_error", message: String(err), httpStatus: 0, ms: performance.now() - started };
  }
  const raw = Buffer.from(await res.arrayBuffer());
  const ms = performance.now() - started;
  if (!streaming || res.headers.get("content-type")?.startsWith("application/json")) {
    if (res.status === 200) return { code: "ok", message: "", httpStatus: 200, ms };
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw.toString("utf8"));
    } catch {
      parsed = undefined;
    }
    const e = errorOf(parsed);
    return { code: e?.code ?? `http_${res.status}`, message: e?.message ?? raw.toString("utf8").slice(0, 200), httpStatus: res.status, ms };
  }
  // Enveloped response: data frames, then an end-stream frame (flag 0x02) holding {error?}.
  let at = 0;
  while (at + 5 <= raw.length) {
    const flags = raw.readUInt8(at);
    const len = raw.readUInt32BE(at + 1);
    const payload = raw.subarray(at + 5, at + 5 + len);
    at += 5 + len;
    if (flags & 0x02) {
      let end: unknown;
      try {
        end = JSON.parse(payload.toString("utf8"));
      } catch {
        return { code: "bad_end_stream", message: payload.toString("utf8").slice(0, 200), httpStatus: res.status, ms };
      }
      const e = errorOf((end as { error?: unknown }).error);
      return e ? { ...e, httpStatus: res.status, ms } : { code: "ok", message: "", httpStatus: res.status, ms };
    }
  }
  return { code: res.status === 200 ? "no_end_stream" : `http_${res.status}`, message: raw.toString("utf8").slice(0, 200), httpStatus: res.status, ms };
}
