// A HandlerContext without connect-node's per-call machinery (linked abort controllers,
// Headers built eagerly), for the two paths that skip connect's handler: in-process calls
// (lib/local-calls.ts) and the Connect JSON unary fast path (lib/connect-unary.ts). Request
// headers become a Headers object only if a handler asks for them; the abort signal exists
// only if a handler reads it (most never do).

import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { createContextValues, type ContextValues, type HandlerContext } from "@connectrpc/connect";

export class LightHandlerContext implements HandlerContext {
  readonly requestMethod = "POST";
  private contextValues: ContextValues | undefined;
  private controller: AbortController | undefined;
  private abortReason: unknown;
  private aborted = false;
  private resHeader: Headers | undefined;
  private resTrailer: Headers | undefined;
  private reqHeader: Headers | undefined;

  constructor(
    readonly service: DescService,
    readonly method: DescMethod,
    readonly protocolName: string,
    /** Header names in lower case → value; read lazily. */
    private readonly headers: () => Iterable<[string, string]>,
    private readonly deadline: number,
  ) {}

  get url(): string {
    return `/${this.service.typeName}/${this.method.name}`;
  }

  get values(): ContextValues {
    return (this.contextValues ??= createContextValues());
  }

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.abortReason);
    }
    return this.controller.signal;
  }

  /** Ends the call for the handler: its signal (if it took one) fires with `reason`. */
  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.abortReason = reason;
    this.controller?.abort(reason);
  }

  timeoutMs(): number | undefined {
    return this.deadline - Date.now();
  }

  get requestHeader(): Headers {
    if (!this.reqHeader) {
      this.reqHeader = new Headers();
      for (const [k, v] of this.headers()) this.reqHeader.append(k, v);
    }
    return this.reqHeader;
  }

  get responseHeader(): Headers {
    return (this.resHeader ??= new Headers());
  }

  get responseTrailer(): Headers {
    return (this.resTrailer ??= new Headers());
  }

  /** Response headers the handler set, if any (without materialising an empty Headers). */
  get setResponseHeader(): Headers | undefined {
    return this.resHeader;
  }

  get setResponseTrailer(): Headers | undefined {
    return this.resTrailer;
  }
}
