// Per-key token buckets: `ratePerSecond` sustained, `burst` at once. take() is O(1) and
// allocates only the first time a key is seen. Idle buckets (full again) are swept when the
// table grows, so a stream of distinct principals cannot grow memory without bound.

interface Bucket {
  tokens: number;
  last: number;
}

const SWEEP_AT = 10_000;

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly perMs: number;

  constructor(
    readonly ratePerSecond: number,
    readonly burst: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(ratePerSecond > 0)) throw new RangeError("ratePerSecond must be > 0");
    if (!(burst >= 1)) throw new RangeError("burst must be >= 1");
    this.perMs = ratePerSecond / 1000;
  }

  /** Take one token for `key`: 0 when allowed, else the milliseconds until one is available. */
  take(key: string): number {
    const t = this.now();
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size >= SWEEP_AT) this.sweep(t);
      b = { tokens: this.burst, last: t };
      this.buckets.set(key, b);
    } else {
      b.tokens = Math.min(this.burst, b.tokens + (t - b.last) * this.perMs);
      b.last = t;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.ceil((1 - b.tokens) / this.perMs);
  }

  private sweep(t: number): void {
    for (const [k, b] of this.buckets) {
      if (b.tokens + (t - b.last) * this.perMs >= this.burst) this.buckets.delete(k);
    }
  }

  get size(): number {
    return this.buckets.size;
  }
}
