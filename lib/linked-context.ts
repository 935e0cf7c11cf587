// An OpenTelemetry Context as a chain of (key, value) links. The API's BaseContext copies
// its whole Map on every setValue; a call's context is built with three or four of them
// (remote parent, SERVER span, deadline, principal), on every RPC and every in-process call.
// A link costs one small object, and a lookup walks a handful of links: contexts here are
// short-lived and shallow (each call starts again from the root).

import type { Context } from "@opentelemetry/api";

const DELETED: unique symbol = Symbol("deleted");

class LinkedContext implements Context {
  constructor(
    private readonly parent: LinkedContext | undefined,
    private readonly key: symbol | undefined,
    private readonly value: unknown,
  ) {}

  getValue(key: symbol): unknown {
    for (let c: LinkedContext | undefined = this; c !== undefined; c = c.parent) {
      if (c.key === key) return c.value === DELETED ? undefined : c.value;
    }
    return undefined;
  }

  setValue(key: symbol, value: unknown): Context {
    return new LinkedContext(this, key, value);
  }

  deleteValue(key: symbol): Context {
    return new LinkedContext(this, key, DELETED);
  }
}

/** The empty context calls start from (equivalent to the API's ROOT_CONTEXT). */
export const LINKED_ROOT: Context = new LinkedContext(undefined, undefined, undefined);
