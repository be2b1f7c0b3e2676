/**
 * Listening to a request's abort signal, cheaply.
 *
 * A request's signal is new each time, and Node's first `addEventListener` on a fresh AbortSignal
 * costs about 5 µs, its `removeEventListener` as much (Node builds an AbortSignal by changing the
 * prototype of an EventTarget, which V8 then handles on slow paths). The core, the queue and the
 * answer stream each listened and unlistened: ~25 µs a request, about 3 % of the gateway's CPU. Here
 * a signal gets one real listener, never removed (it dies with its request), and the parties that
 * listen are a set.
 */
const listeners = new WeakMap<AbortSignal, Set<() => void>>();

/** Calls each party once, in the order they started listening. */
function tell(parties: Set<() => void>): void {
  // A listener may stop another while the set is walked: walk a copy, call only those still in.
  for (const party of [...parties]) if (parties.delete(party)) party();
}

/**
 * A signal this process aborts itself (a request's client leaving): its parties are told by `abort()`
 * directly, so the signal needs no listener at all.
 */
export function ownAbort(): { signal: AbortSignal; abort: () => void } {
  const controller = new AbortController();
  const parties = new Set<() => void>();
  listeners.set(controller.signal, parties);
  return {
    signal: controller.signal,
    abort: () => {
      if (controller.signal.aborted) return;
      controller.abort(); // the signal's own listeners (a fetch's, if it was given one) first
      tell(parties);
    },
  };
}

/**
 * Calls `listener` once when `signal` aborts; returns what stops that. As with `addEventListener`, a
 * listener added once the signal has aborted is never called: check `signal.aborted` first.
 */
export function onAbort(signal: AbortSignal, listener: () => void): () => void {
  let set = listeners.get(signal);
  if (!set) {
    const parties = new Set<() => void>();
    set = parties;
    listeners.set(signal, parties);
    signal.addEventListener('abort', () => tell(parties), { once: true });
  }
  const parties = set;
  parties.add(listener);
  return () => void parties.delete(listener);
}
