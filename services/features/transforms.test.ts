// Built-in transforms against values computed independently (numpy conventions for
// bucketize: np.digitize(x, boundaries, right=False)), and the checks a use gets at apply.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { TransformRegistry } from "./transforms.js";

describe("transforms", () => {
  const reg = new TransformRegistry([
    {
      name: "clip01",
      description: "clamp to [0, 1]",
      arguments: [{ name: "x", acceptedTypes: ["float64"], acceptsNull: false, description: "" }],
      variadic: false,
      parameters: [],
      fn: ([x]) => Math.min(1, Math.max(0, x as number)),
    },
  ]);

  it("computes ratio, log1p and bucketize", () => {
    const fn = (name: string) => reg.get(name)!.fn;
    assert.equal(fn("ratio")([50, 4n], {}), 12.5);
    assert.equal(fn("ratio")([1, 0], {}), null);
    assert.equal(fn("log1p")([1e-10], {}), Math.log1p(1e-10));
    assert.equal(fn("log1p")([-1], {}), null);
    const b = [0, 10, 100];
    // np.digitize([-5, 0, 9.99, 10, 99, 100, 1e6], [0, 10, 100]) == [0, 1, 1, 2, 2, 3, 3]
    assert.deepEqual([-5, 0, 9.99, 10, 99, 100, 1e6].map((x) => fn("bucketize")([x], { boundaries: b })), [0n, 1n, 1n, 2n, 2n, 3n, 3n]);
  });

  it("lists built-ins and user-defined transforms with a hash of their source", () => {
    const list = reg.list();
    assert.deepEqual(list.map((t) => [t.name, t.builtin]), [["bucketize", true], ["clip01", false], ["log1p", true], ["ratio", true]]);
    assert.match(list[1]!.sourceSha256, /^[0-9a-f]{64}$/);
    assert.throws(() => new TransformRegistry([{ ...reg.get("clip01")!, name: "ratio" }]), /registered twice/);
  });

  it("checks a use at apply: arity, input types, parameters", () => {
    assert.deepEqual(reg.checkUse("bucketize", ["int64"], { boundaries: [1, 2] }, "f"), { outputType: "int64", params: { boundaries: [1, 2] } });
    assert.equal(reg.checkUse("clip01", ["float64"], {}, "f").outputType, "float64", "output type defaults to the first argument's");
    assert.throws(() => reg.checkUse("ratio", ["float64"], {}, "f"), /f\.inputs: ratio takes 2 input/);
    assert.throws(() => reg.checkUse("log1p", ["string"], {}, "f"), /f\.inputs\[0\]: log1p argument x accepts float32\/float64\/int64, got string/);
    assert.throws(() => reg.checkUse("bucketize", ["float64"], {}, "f"), /f\.params\.boundaries: is required/);
    assert.throws(() => reg.checkUse("bucketize", ["float64"], { boundaries: [3, 1] }, "f"), /strictly increasing/);
    assert.throws(() => reg.checkUse("bucketize", ["float64"], { boundaries: [1], extra: 1 }, "f"), /f\.params\.extra: bucketize has no parameter extra/);
  });
});
