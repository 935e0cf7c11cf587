// The linked context answers exactly as the API's map-copying BaseContext does.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createContextKey, ROOT_CONTEXT, type Context } from "@opentelemetry/api";
import { LINKED_ROOT } from "./linked-context.js";

describe("LINKED_ROOT", () => {
  it("matches ROOT_CONTEXT over random set/delete sequences, leaving every earlier context unchanged", () => {
    const keys = Array.from({ length: 5 }, (_, i) => createContextKey(`k${i}`));
    let seed = 7;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
    for (let trial = 0; trial < 200; trial++) {
      let a: Context = ROOT_CONTEXT;
      let b: Context = LINKED_ROOT;
      const history: Array<[Context, Context]> = [];
      for (let step = 0; step < 12; step++) {
        const k = keys[rand(keys.length)]!;
        if (rand(4) === 0) {
          a = a.deleteValue(k);
          b = b.deleteValue(k);
        } else {
          const v = rand(3) === 0 ? undefined : { step };
          a = a.setValue(k, v);
          b = b.setValue(k, v);
        }
        history.push([a, b]);
      }
      for (const [x, y] of history) for (const k of keys) assert.equal(y.getValue(k), x.getValue(k));
    }
  });
});
