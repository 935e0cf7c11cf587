// A handler on a hot path may answer with protobuf bytes it encoded itself (a hand-written
// encoder for one large response), skipping protobuf-es's reflective create + toBinary.
// Only the gRPC port passes bytes through; Connect JSON needs a message, so a handler asks
// `acceptsPreEncoded(ctx)` first and otherwise answers the normal way.

import type { HandlerContext } from "@connectrpc/connect";

const PRE_ENCODED = Symbol.for("mlmesh.preEncoded");

export interface PreEncoded {
  readonly [PRE_ENCODED]: true;
  readonly bytes: Uint8Array;
}

export function preEncoded(bytes: Uint8Array): PreEncoded {
  return { [PRE_ENCODED]: true, bytes };
}

export function isPreEncoded(value: unknown): value is PreEncoded {
  return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[PRE_ENCODED] === true;
}

/** True when the call arrived over gRPC (the gRPC port), where pre-encoded bytes are sent as they are. */
export function acceptsPreEncoded(ctx: HandlerContext): boolean {
  return ctx.protocolName === "grpc";
}

/**
 * The pre-encoded bytes typed as the handler's response, for handlers whose signature wants
 * a message. Only valid when `acceptsPreEncoded(ctx)` was true.
 */
export function answerPreEncoded<T>(bytes: Uint8Array): T {
  return preEncoded(bytes) as unknown as T;
}

// The request side of the same idea: a unary or client-streaming handler marked with
// `rawRequests` gets each request message's protobuf bytes (a Uint8Array) from the gRPC port
// instead of a decoded message,
// so it can read a large request with a hand-written decoder. Every other transport
// (Connect, grpc-js, in-process calls) still passes the decoded message, so such a handler
// takes either; it owns refusing malformed bytes (INVALID_ARGUMENT).

const RAW_REQUESTS = Symbol.for("mlmesh.rawRequests");

/** Marks a unary or client-streaming handler as accepting raw request bytes on the gRPC port; returns it. */
export function rawRequests<F extends (...args: never[]) => unknown>(handler: F): F {
  (handler as unknown as Record<symbol, boolean>)[RAW_REQUESTS] = true;
  return handler;
}

/** True when `rawRequests` marked the handler. */
export function wantsRawRequests(handler: unknown): boolean {
  return typeof handler === "function" && (handler as unknown as Record<symbol, unknown>)[RAW_REQUESTS] === true;
}

/**
 * A request a hand-written encoder produced (e.g. encodeLogOutcomesRequest), typed as the
 * client method's request: lib/clients.ts sends the bytes as they are, and an in-process
 * call decodes them first.
 */
export function preEncodedRequest<T>(bytes: Uint8Array): T {
  return preEncoded(bytes) as unknown as T;
}
