// A small seeded random number generator, reproducible bit for bit in any language: the
// bootstrap's resampling and the simulations in tests depend on it, not on Math.random.
//
// Generator: xoshiro128** 1.0 (Blackman & Vigna 2018), 128-bit state, 32-bit outputs, using
// only 32-bit operations (so it is fast in JavaScript). Seeding: the integer seed
// (0 ≤ seed < 2^53) goes through SplitMix64 twice; the two 64-bit outputs o1, o2 become the
// state words s0 = low32(o1), s1 = high32(o1), s2 = low32(o2), s3 = high32(o2).
// Integers in [0, n) come from rejection sampling: draw r until r < 2^32 − (2^32 mod n),
// return r mod n (unbiased). Doubles in [0, 1) take 53 bits from two outputs:
// ((a >>> 5) · 2^26 + (b >>> 6)) / 2^53.

import { ValidationError } from "../../../lib/errors.js";

const MASK64 = (1n << 64n) - 1n;

function splitMix64(state: bigint): { state: bigint; value: bigint } {
  const next = (state + 0x9e3779b97f4a7c15n) & MASK64;
  let z = next;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return { state: next, value: z ^ (z >> 31n) };
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

export class Xoshiro128 {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number) {
    if (!Number.isSafeInteger(seed) || seed < 0) {
      throw new ValidationError("seed", `must be a whole number between 0 and 2^53 - 1, got ${seed}`);
    }
    const a = splitMix64(BigInt(seed));
    const b = splitMix64(a.state);
    this.s0 = Number(a.value & 0xffffffffn) | 0;
    this.s1 = Number(a.value >> 32n) | 0;
    this.s2 = Number(b.value & 0xffffffffn) | 0;
    this.s3 = Number(b.value >> 32n) | 0;
  }

  /** Next 32-bit output as an unsigned integer in [0, 2^32). */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform integer in [0, n), 1 ≤ n ≤ 2^32, without modulo bias. */
  nextInt(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > 2 ** 32) throw new ValidationError("n", `must be a whole number in [1, 2^32], got ${n}`);
    const limit = 2 ** 32 - (2 ** 32 % n);
    for (;;) {
      const r = this.nextUint32();
      if (r < limit) return r % n;
    }
  }

  /** Uniform double in [0, 1) with 53 random bits. */
  nextDouble(): number {
    const a = this.nextUint32() >>> 5;
    const b = this.nextUint32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }

  /** Standard normal deviate (Box–Muller, one of the pair); for simulations, not for the spec. */
  nextNormal(): number {
    const u1 = 1 - this.nextDouble(); // (0, 1]
    const u2 = this.nextDouble();
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }
}
