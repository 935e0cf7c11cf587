// Targeting semantics of the assignment library (the contract's TargetingCondition rules).

import assert from "node:assert/strict";
import { it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { TargetingConditionSchema, TargetingOperator as Op } from "../../gen/mlmesh/experiments/v1/experiments_resources_pb.js";
import { ValueSchema } from "../../gen/mlmesh/types/v1/types_pb.js";
import { conditionHolds } from "./assign.js";

const s = (value: string) => create(ValueSchema, { kind: { case: "stringValue", value } });
const n = (value: number) => create(ValueSchema, { kind: { case: "doubleValue", value } });
const i = (value: number) => create(ValueSchema, { kind: { case: "int64Value", value: BigInt(value) } });
const cond = (attribute: string, operator: Op, ...values: ReturnType<typeof s>[]) => create(TargetingConditionSchema, { attribute, operator, values });

it("evaluates targeting: missing attributes, numeric comparison across types, type mismatches, regex", () => {
  const attrs = { country: s("fr"), version: i(12) };
  assert.equal(conditionHolds(cond("country", Op.EQUALS, s("fr")), attrs), true);
  assert.equal(conditionHolds(cond("country", Op.IN, s("de"), s("fr")), attrs), true);
  assert.equal(conditionHolds(cond("version", Op.GREATER_THAN_OR_EQUAL, n(12)), attrs), true, "int64 vs double compare numerically");
  assert.equal(conditionHolds(cond("version", Op.LESS_THAN, s("13")), attrs), false, "a type mismatch fails");
  assert.equal(conditionHolds(cond("platform", Op.NOT_EQUALS, s("ios")), attrs), true, "missing satisfies NOT_EQUALS");
  assert.equal(conditionHolds(cond("platform", Op.NOT_IN, s("ios")), attrs), true);
  assert.equal(conditionHolds(cond("platform", Op.EQUALS, s("ios")), attrs), false);
  assert.equal(conditionHolds(cond("platform", Op.NOT_EXISTS), attrs), true);
  assert.equal(conditionHolds(cond("country", Op.EXISTS), attrs), true);
  assert.equal(conditionHolds(cond("country", Op.MATCHES, s("f.")), attrs), true);
  assert.equal(conditionHolds(cond("country", Op.MATCHES, s("f")), attrs), false, "MATCHES is a full match");
});
