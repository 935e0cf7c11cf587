// Reading a GetOnlineFeatures response in either shape. The router asks for `columnar`
// (one message of packed arrays per ref instead of one FeatureValue message per cell): far
// less to decode for a Rank over hundreds of candidates. A features service that predates
// the field ignores it and answers `rows`; both read the same through `FeatureGrid`.

import { FeatureStatus, type FeatureValue } from "../../gen/mlmesh/features/v1/features_resources_pb.js";
import type { GetOnlineFeaturesResponse, OnlineFeatureColumn } from "../../gen/mlmesh/features/v1/features_service_pb.js";
import type { Value } from "../../gen/mlmesh/types/v1/types_pb.js";
import { valueMessage } from "../../lib/values.js";

/** Status and value of (entity row, ref column); the value only where the status is PRESENT. */
export interface FeatureGrid {
  status(row: number, col: number): FeatureStatus;
  /** The PRESENT value, else undefined (never a zero filler standing for a missing value). */
  value(row: number, col: number): Value | undefined;
}

type ColumnKind = "doubleValue" | "floatValue" | "int64Value" | "stringValue" | "boolValue" | "floatVectorValue" | undefined;

/** Which typed array of a column holds its values: the one with an entry per entity. */
function kindOf(c: OnlineFeatureColumn, n: number): ColumnKind {
  if (n === 0) return undefined;
  if (c.doubleValues.length === n) return "doubleValue";
  if (c.floatValues.length === n) return "floatValue";
  if (c.int64Values.length === n) return "int64Value";
  if (c.stringValues.length === n) return "stringValue";
  if (c.boolValues.length === n) return "boolValue";
  if (c.vectorValues.length === n) return "floatVectorValue";
  return undefined;
}

function cellValue(c: OnlineFeatureColumn, kind: ColumnKind, i: number): Value | undefined {
  switch (kind) {
    case "doubleValue":
      return valueMessage({ case: kind, value: c.doubleValues[i]! });
    case "floatValue":
      return valueMessage({ case: kind, value: c.floatValues[i]! });
    case "int64Value":
      return valueMessage({ case: kind, value: c.int64Values[i]! });
    case "stringValue":
      return valueMessage({ case: kind, value: c.stringValues[i]! });
    case "boolValue":
      return valueMessage({ case: kind, value: c.boolValues[i]! });
    case "floatVectorValue":
      return valueMessage({ case: kind, value: c.vectorValues[i]! });
    default:
      return undefined;
  }
}

class ColumnGrid implements FeatureGrid {
  private readonly kinds: ColumnKind[];
  constructor(
    private readonly columns: readonly OnlineFeatureColumn[],
    entities: number,
  ) {
    this.kinds = columns.map((c) => kindOf(c, entities));
  }
  status(row: number, col: number): FeatureStatus {
    return this.columns[col]?.statuses[row] ?? FeatureStatus.UNSPECIFIED;
  }
  value(row: number, col: number): Value | undefined {
    const c = this.columns[col];
    if (!c || c.statuses[row] !== FeatureStatus.PRESENT) return undefined;
    return cellValue(c, this.kinds[col], row);
  }
}

class RowGrid implements FeatureGrid {
  constructor(private readonly rows: ReadonlyArray<{ values: readonly FeatureValue[] }>) {}
  status(row: number, col: number): FeatureStatus {
    return this.rows[row]?.values[col]?.status ?? FeatureStatus.UNSPECIFIED;
  }
  value(row: number, col: number): Value | undefined {
    const fv = this.rows[row]?.values[col];
    return fv && fv.status === FeatureStatus.PRESENT && fv.value?.kind.case !== undefined ? fv.value : undefined;
  }
}

/** The response as a grid, whichever shape the service answered in. */
export function featureGrid(res: GetOnlineFeaturesResponse, entities: number): FeatureGrid {
  if (res.columns.length > 0 || (res.rows.length === 0 && res.refs.length > 0)) return new ColumnGrid(res.columns, entities);
  return new RowGrid(res.rows);
}
