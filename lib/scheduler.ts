/**
 * A bounded, fair waiting room in front of the Ollama hosts.
 *
 * Requests that find no free slot wait here, at most `limit` of them; past that the gateway answers
 * 503 at once rather than letting Ollama queue without bound or order. Waiters are served round-robin
 * across organisations: the organisation just served goes to the back of the line, so one organisation
 * with 100 waiting requests delays another's single request by at most one slot.
 *
 * The scheduler knows nothing of hosts: `tryAssign` (given by the pool) either hands out a slot, says
 * "wait", or fails the waiter (e.g. no host has its model any more). The pool calls `pump()` whenever a
 * slot is freed or a host comes back.
 */
import { onAbort, type CancelSignal } from './abort';
import { GatewayError } from './errors';

export type Assignment<T> = { slot: T } | 'wait' | GatewayError;

interface Waiter<T> {
  orgId: string;
  tryAssign: () => Assignment<T>;
  resolve: (slot: T) => void;
  reject: (err: unknown) => void;
  cleanup: () => void;
}

/** Seconds a client refused by a full queue is told to wait. */
export const QUEUE_FULL_RETRY_AFTER_SECONDS = 2;

export class FairScheduler<T> {
  /** Organisations with waiters, in serving order; each with its own FIFO. */
  private readonly orgs = new Map<string, Array<Waiter<T>>>();
  private waiting = 0;
  private pumping = false;

  constructor(private readonly limit: number) {}

  /** Requests currently waiting for a slot. */
  get depth(): number {
    return this.waiting;
  }

  /**
   * A slot now when one is free and nobody is waiting (so the queue cannot be overtaken), else a place
   * in line. Rejects with 503 when the line is full and with the signal's reason when the caller leaves.
   */
  acquire(orgId: string, signal: CancelSignal, tryAssign: () => Assignment<T>): Promise<T> {
    if (signal.aborted) return Promise.reject(abortError(signal));
    if (this.waiting === 0) {
      const now = tryAssign();
      if (now instanceof GatewayError) return Promise.reject(now);
      if (now !== 'wait') return Promise.resolve(now.slot);
    }
    if (this.waiting >= this.limit) {
      return Promise.reject(
        new GatewayError('overloaded', `The gateway's queue is full (${this.limit} requests waiting); try again shortly.`, {
          retryAfterSeconds: QUEUE_FULL_RETRY_AFTER_SECONDS,
        }),
      );
    }
    return new Promise<T>((resolve, reject) => {
      const waiter: Waiter<T> = { orgId, tryAssign, resolve, reject, cleanup: () => undefined };
      // A client that left frees its place at once.
      waiter.cleanup = onAbort(signal, () => {
        if (this.remove(waiter)) reject(abortError(signal));
      });
      let line = this.orgs.get(orgId);
      if (!line) {
        line = [];
        this.orgs.set(orgId, line); // a new organisation joins at the back
      }
      line.push(waiter);
      this.waiting++;
      // A slot may have been freed between the check above and now (e.g. by another waiter's abort).
      this.pump();
    });
  }

  /** Hands free slots to waiters, organisation by organisation, until nobody more can be served. */
  pump(): void {
    if (this.pumping) return; // resolve() callbacks may release synchronously; the outer loop continues
    this.pumping = true;
    try {
      let served = true;
      while (served && this.waiting > 0) {
        served = false;
        for (const [orgId, line] of this.orgs) {
          // The first waiter of this organisation that can go now (another model may be free).
          for (let i = 0; i < line.length; i++) {
            const waiter = line[i] as Waiter<T>;
            const result = waiter.tryAssign();
            if (result === 'wait') continue;
            line.splice(i, 1);
            this.waiting--;
            waiter.cleanup();
            // Served: this organisation goes to the back of the line.
            this.orgs.delete(orgId);
            if (line.length > 0) this.orgs.set(orgId, line);
            if (result instanceof GatewayError) waiter.reject(result);
            else waiter.resolve(result.slot);
            served = true;
            break;
          }
          if (served) break; // restart from the (new) front of the line
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  private remove(waiter: Waiter<T>): boolean {
    const line = this.orgs.get(waiter.orgId);
    const index = line ? line.indexOf(waiter) : -1;
    if (!line || index < 0) return false;
    line.splice(index, 1);
    if (line.length === 0) this.orgs.delete(waiter.orgId);
    this.waiting--;
    waiter.cleanup();
    return true;
  }
}

function abortError(signal: CancelSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  const err = new Error('The client left while waiting for a slot.');
  err.name = 'AbortError';
  return err;
}
