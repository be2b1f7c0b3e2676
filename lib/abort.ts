/**
 * A request's abort, told to the parties that care (the core, the queue, the answer stream) cheaply.
 *
 * Node's first `addEventListener` on a fresh AbortSignal costs about 5 µs, its `removeEventListener` as
 * much, and making an AbortController about 3 µs (Node builds an AbortSignal by changing the prototype
 * of an EventTarget, which V8 then handles on slow paths): ~30 µs a request, about 4 % of the gateway's
 * CPU, when each party listened and unlistened. Here the parties of a signal are a set: a signal the
 * gateway aborts itself (`ownAbort`, a client leaving) is a plain object that tells them directly, and a
 * real AbortSignal (tests, timeouts) gets one listener, never removed.
 */

/** What the core needs of an abort signal: whether it fired, and why. An AbortSignal is one. */
export interface CancelSignal {
  readonly aborted: boolean;
  readonly reason?: unknown;
}

const listeners = new WeakMap<CancelSignal, Set<() => void>>();

/** Calls each party once, in the order they started listening. */
function tell(parties: Set<() => void>): void {
  // A listener may stop another while the set is walked: walk a copy, call only those still in.
  for (const party of [...parties]) if (parties.delete(party)) party();
}

/** A signal the gateway aborts itself: a plain object, no EventTarget. */
class Departure implements CancelSignal {
  aborted = false;
  reason: unknown = undefined;
}

/**
 * A signal this process aborts itself (a request's client leaving): `abort()` tells its parties
 * directly. `asAbortSignal` gives a real AbortSignal for it where an API wants one (fetch).
 */
export function ownAbort(): { signal: CancelSignal; abort: () => void } {
  const signal = new Departure();
  const parties = new Set<() => void>();
  listeners.set(signal, parties);
  return {
    signal,
    abort: () => {
      if (signal.aborted) return;
      signal.aborted = true;
      signal.reason = abortReason();
      tell(parties);
    },
  };
}

/** What an AbortController's abort() gives as its reason when none is passed. */
function abortReason(): Error {
  return new DOMException('This operation was aborted', 'AbortError');
}

const realSignals = new WeakMap<CancelSignal, AbortSignal>();

/** A real AbortSignal that aborts with `signal` (the same one when it already is one), for fetch. */
export function asAbortSignal(signal: CancelSignal): AbortSignal {
  if (signal instanceof AbortSignal) return signal;
  let real = realSignals.get(signal);
  if (!real) {
    const controller = new AbortController();
    if (signal.aborted) controller.abort(signal.reason);
    else onAbort(signal, () => controller.abort(signal.reason));
    real = controller.signal;
    realSignals.set(signal, real);
  }
  return real;
}

/**
 * Calls `listener` once when `signal` aborts; returns what stops that. As with `addEventListener`, a
 * listener added once the signal has aborted is never called: check `signal.aborted` first.
 */
export function onAbort(signal: CancelSignal, listener: () => void): () => void {
  let set = listeners.get(signal);
  if (!set) {
    const parties = new Set<() => void>();
    set = parties;
    listeners.set(signal, parties);
    // Only an AbortSignal gets here: ownAbort's signals have their set from the start.
    if (signal instanceof AbortSignal) signal.addEventListener('abort', () => tell(parties), { once: true });
  }
  const parties = set;
  parties.add(listener);
  return () => void parties.delete(listener);
}
