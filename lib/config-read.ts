// The variable readers every config area shares: each parses one MLMESH_* variable, and a
// bad value throws ConfigError with the one line the process prints before exiting 78.

/** Thrown for a bad variable; its message is the one line the process prints before exiting. */
export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    expected: string,
    got: string,
  ) {
    super(`invalid ${variable}=${JSON.stringify(got)}: expected ${expected}`);
    this.name = "ConfigError";
  }
}

export type Env = Readonly<Record<string, string | undefined>>;

export function readInt(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(name, `an integer in [${min}, ${max}]`, raw);
  const n = Number(raw.trim());
  if (n < min || n > max) throw new ConfigError(name, `an integer in [${min}, ${max}]`, raw);
  return n;
}

export function readPort(env: Env, name: string, fallback: number): number {
  // 0 asks the OS for a free port (tests use it).
  return readInt(env, name, fallback, 0, 65535);
}

export function readBool(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const v = raw.trim().toLowerCase();
  if (["1", "true", "yes", "on"].includes(v)) return true;
  if (["0", "false", "no", "off"].includes(v)) return false;
  throw new ConfigError(name, "true or false", raw);
}

export function readList(env: Env, name: string, item: RegExp, expected: string): readonly string[] {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return Object.freeze([]);
  const items = raw.split(",").map((s) => s.trim()).filter(Boolean);
  for (const i of items) if (!item.test(i)) throw new ConfigError(name, expected, raw);
  return Object.freeze(items);
}

export function readEnum<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const v = raw.trim().toLowerCase() as T;
  if (!allowed.includes(v)) throw new ConfigError(name, `one of ${allowed.join(", ")}`, raw);
  return v;
}

export function readUrl(env: Env, name: string, schemes: readonly string[]): string | undefined {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return undefined;
  for (const part of raw.split(",")) {
    let url: URL;
    try {
      url = new URL(part.trim());
    } catch {
      throw new ConfigError(name, `a URL (${schemes.map((s) => `${s}//host:port`).join(" or ")})`, raw);
    }
    if (!schemes.includes(url.protocol)) {
      throw new ConfigError(name, `a URL with scheme ${schemes.join(" or ")}`, raw);
    }
  }
  return raw.trim();
}

export function readHostPort(env: Env, name: string, fallback: string): string {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const v = raw.trim();
  if (!/^(https?:\/\/)?[A-Za-z0-9.\-[\]:]+:\d{1,5}$/.test(v)) {
    throw new ConfigError(name, "host:port or http://host:port", raw);
  }
  return v.startsWith("http") ? v : `http://${v}`;
}

/** A duration such as 500ms, 60s, 5m, 2h or 7d (or plain milliseconds), as milliseconds. */
export function readDurationMs(env: Env, name: string, fallbackMs: number, minMs: number, maxMs: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return fallbackMs;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(raw.trim());
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
  const ms = m ? Number(m[1]) * unit[(m[2] ?? "ms") as keyof typeof unit] : Number.NaN;
  if (!Number.isFinite(ms) || ms < minMs || ms > maxMs) {
    throw new ConfigError(name, `a duration (e.g. 500ms, 60s, 5m) between ${minMs} ms and ${maxMs} ms`, raw);
  }
  return Math.round(ms);
}

/** A number (float) in [min, max]. */
export function readNumber(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return fallback;
  const n = Number(raw.trim());
  if (!/^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(raw.trim()) || n < min || n > max) {
    throw new ConfigError(name, `a number in [${min}, ${max}]`, raw);
  }
  return n;
}
