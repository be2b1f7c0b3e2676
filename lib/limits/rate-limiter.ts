/**
 * In-memory fixed-window counters for requests and tokens per minute.
 *
 * A window starts on a whole minute (UTC) and every counter in it resets together, so the reset time
 * a reply announces (`X-RateLimit-Reset`) is exact and the same for every client. The price of fixed
 * windows is that a burst straddling a boundary can pass up to twice the limit within 60 seconds;
 * for a LAN gateway that is a fair trade for counters a reader can verify by hand.
 *
 * Everything here is synchronous: Node runs one check-and-take at a time, so concurrent requests
 * can never both see the last free slot. Counters live in one process; several gateway processes
 * would each enforce the full limit.
 */

/** One limit to enforce: its counter's name (e.g. `key:3:rpm`) and its size per window. */
export interface LimitSpec {
  key: string;
  limit: number;
}

/** What a counter looks like after a check: for the X-RateLimit-* headers and Retry-After. */
export interface WindowState {
  key: string;
  limit: number;
  remaining: number;
  /** Epoch milliseconds at which the window resets. */
  resetAt: number;
}

export type TakeResult =
  | { ok: true; states: WindowState[]; windowStart: number }
  /** `blocking` is the counter that refused; nothing was taken from any counter. */
  | { ok: false; states: WindowState[]; blocking: WindowState; windowStart: number };

interface Counter {
  windowStart: number;
  used: number;
}

export class RateLimiter {
  private readonly counters = new Map<string, Counter>();
  private sweptWindow = 0;

  constructor(
    private readonly now: () => number = Date.now,
    readonly windowMs = 60_000,
  ) {}

  /** The start of the window that contains `at`. */
  windowStartOf(at: number): number {
    return at - (at % this.windowMs);
  }

  /**
   * Takes `amount` from every counter, or from none when any of them cannot cover it.
   * An amount larger than a whole window's limit is refused too (it could never fit).
   */
  take(specs: readonly LimitSpec[], amount: number): TakeResult {
    const windowStart = this.windowStartOf(this.now());
    this.sweep(windowStart);
    const before = specs.map((spec) => ({ spec, used: this.used(spec.key, windowStart) }));
    const blockingIndex = before.findIndex(({ spec, used }) => used + amount > spec.limit);
    if (blockingIndex >= 0) {
      const states = before.map(({ spec, used }) => this.state(spec, used, windowStart));
      return { ok: false, states, blocking: states[blockingIndex] as WindowState, windowStart };
    }
    for (const { spec, used } of before) this.counters.set(spec.key, { windowStart, used: used + amount });
    return { ok: true, states: before.map(({ spec, used }) => this.state(spec, used + amount, windowStart)), windowStart };
  }

  /**
   * Corrects what was taken in `windowStart` by `delta` (negative gives back). A window that has
   * already ended is left alone: its counters no longer limit anyone.
   */
  adjust(keys: readonly string[], windowStart: number, delta: number): void {
    for (const key of keys) {
      const counter = this.counters.get(key);
      if (counter && counter.windowStart === windowStart) counter.used = Math.max(0, counter.used + delta);
    }
  }

  /** The current state of one counter without taking anything. */
  peek(spec: LimitSpec): WindowState {
    const windowStart = this.windowStartOf(this.now());
    return this.state(spec, this.used(spec.key, windowStart), windowStart);
  }

  private used(key: string, windowStart: number): number {
    const counter = this.counters.get(key);
    return counter && counter.windowStart === windowStart ? counter.used : 0;
  }

  private state(spec: LimitSpec, used: number, windowStart: number): WindowState {
    return { key: spec.key, limit: spec.limit, remaining: Math.max(0, spec.limit - used), resetAt: windowStart + this.windowMs };
  }

  /** Drops counters of past windows once per window, so the map holds only the keys active now. */
  private sweep(windowStart: number): void {
    if (this.sweptWindow === windowStart) return;
    this.sweptWindow = windowStart;
    for (const [key, counter] of this.counters) if (counter.windowStart !== windowStart) this.counters.delete(key);
  }
}
