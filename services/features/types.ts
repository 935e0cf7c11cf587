// Plain domain types of the feature service: view and feature-set definitions and the
// values they carry. No protobuf or gRPC here; service.ts maps to and from the contract.

/** Element type of a feature, request field or transform output. */
export type ValueKind = "float32" | "float64" | "int64" | "string" | "bool" | "float_vector";

/** A key column may only be int64 or string. */
export type KeyKind = "int64" | "string";

/** One value as the domain sees it; null is NULL. int64 is bigint so no precision is lost. */
export type Scalar = number | bigint | string | boolean | readonly number[] | null;

export interface EntityDef {
  readonly name: string;
  readonly type: KeyKind;
  readonly description: string;
}

export interface FeatureDef {
  readonly name: string;
  readonly type: ValueKind;
  /** float_vector only; 0 = any length. */
  readonly vectorDimension: number;
  readonly pii: boolean;
  readonly description: string;
  readonly labels: Readonly<Record<string, string>>;
}

export interface RequestFieldDef {
  readonly name: string;
  readonly type: ValueKind;
  readonly required: boolean;
  readonly description: string;
}

export type OnDemandInputDef = { readonly featureRef: string } | { readonly requestField: string };

export interface OnDemandDef {
  readonly name: string;
  readonly transform: string;
  readonly inputs: readonly OnDemandInputDef[];
  readonly params: Readonly<Record<string, unknown>>;
  /** Resolved at apply: the transform's output type for these inputs. */
  readonly type: ValueKind;
  readonly pii: boolean;
  readonly description: string;
}

/** A view definition as applied (no version or times). */
export interface ViewDef {
  readonly name: string;
  readonly entities: readonly EntityDef[];
  readonly features: readonly FeatureDef[];
  /** 0: never expires. */
  readonly ttlMs: number;
  readonly description: string;
  readonly owner: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly onDemand: readonly OnDemandDef[];
  readonly requestFields: readonly RequestFieldDef[];
}

export interface StoredView extends ViewDef {
  readonly version: number;
  readonly createTime: number;
  readonly updateTime: number;
}

export interface FeatureSetDef {
  readonly name: string;
  readonly refs: readonly string[];
  readonly description: string;
  readonly owner: string;
  readonly labels: Readonly<Record<string, string>>;
}

export interface StoredFeatureSet extends FeatureSetDef {
  readonly version: number;
  readonly createTime: number;
  readonly updateTime: number;
}

export type ApplyOutcomeKind = "created" | "unchanged" | "updated";

export interface ApplyResult<T> {
  readonly name: string;
  readonly outcome: ApplyOutcomeKind;
  readonly stored: T;
  readonly changes: readonly string[];
}

/** Status of one value in a read. */
export type ValueStatus = "present" | "not_found" | "expired" | "null";

/** One value of a read: `value` is meaningful only when status is "present". */
export interface ReadValue {
  status: ValueStatus;
  value: Scalar;
  /** Event time (ms) of the row the value came from; NaN for not_found. */
  eventTime: number;
}

/** One row to write, already checked against the view. */
export interface CheckedRow {
  readonly entityKey: string;
  readonly eventTime: number;
  /** JSON of the row's values, positional to the view's stored features. */
  readonly valuesJson: string;
}
