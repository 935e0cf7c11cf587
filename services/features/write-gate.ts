// Orders writes on the feature service's SQLite connection around a sliced commit.
// A large upload commits in one transaction that spans several event-loop ticks (so the
// process keeps serving while it runs); every other write on the connection must wait
// for it, or it would land inside that transaction (and vanish with a rollback). Ordinary
// writes share the gate; a sliced commit holds it alone. Reads are not gated: they use a
// second, read-only connection, which sees only committed data (WAL).

export class WriteGate {
  private shared = 0;
  private exclusive = false;
  /** Exclusive holders waiting: new shared holders queue behind them (no starvation). */
  private pendingExclusive = 0;
  private waiters: Array<() => void> = [];

  private wait(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const resolve of w) resolve();
  }

  /** Run an ordinary write (may be async) once no sliced commit holds the connection. */
  async run<T>(fn: () => T | Promise<T>): Promise<T> {
    while (this.exclusive || this.pendingExclusive > 0) await this.wait();
    this.shared++;
    try {
      return await fn();
    } finally {
      this.shared--;
      this.wake();
    }
  }

  /** Run `fn` with the connection to itself: no other write starts until it settles. */
  async exclusively<T>(fn: () => Promise<T>): Promise<T> {
    this.pendingExclusive++;
    try {
      while (this.exclusive || this.shared > 0) await this.wait();
    } finally {
      this.pendingExclusive--;
    }
    this.exclusive = true;
    try {
      return await fn();
    } finally {
      this.exclusive = false;
      this.wake();
    }
  }
}
