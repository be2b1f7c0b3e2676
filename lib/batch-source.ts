/**
 * How an answer travels from Ollama's socket to the client's without a promise per token.
 *
 * Each layer (the answer stream, the core's relay) is a source of batches that its consumer reads
 * synchronously: `read()` takes everything there is now, and `whenReadable()` asks to be called back
 * once there may be more. A consumer that keeps up (the SSE relay) then costs one callback per read
 * from Ollama, where three stacked async iterators cost a promise and several microtasks per layer
 * and token (bench/README.md, fifth session). `nextBatch()` gives the same source as an async iterator
 * for consumers where a promise per batch costs nothing worth counting (a whole answer, tests).
 */

/** What `read()` returns once the source has ended and everything in it has been read. */
export const ENDED: unique symbol = Symbol('ended');

export interface BatchSource<T> {
  /**
   * Everything available now, as one batch (possibly empty: a read with no items of interest still
   * counts); `null` when nothing is yet; `ENDED` at the end. Throws the source's failure.
   */
  read(): T[] | null | typeof ENDED;
  /** Calls `callback` once, when `read()` may return something other than `null`. One waiter at a time. */
  whenReadable(callback: () => void): void;
  /** The consumer is done with the source, early or not. Idempotent. */
  cancel(): void;
}

/** `source.read()` as a promise: waits when nothing is there yet. */
export function nextBatch<T>(source: BatchSource<T>): Promise<IteratorResult<T[], undefined>> {
  return new Promise((resolve, reject) => {
    const attempt = (): void => {
      let batch: T[] | null | typeof ENDED;
      try {
        batch = source.read();
      } catch (err) {
        reject(err);
        return;
      }
      if (batch === null) source.whenReadable(attempt);
      else resolve(batch === ENDED ? { value: undefined, done: true } : { value: batch, done: false });
    };
    attempt();
  });
}
