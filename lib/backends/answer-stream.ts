/**
 * One streamed answer from Ollama, read over undici's `dispatch()`: bytes arrive in a callback, are cut
 * into NDJSON lines there, and reach the consumer as a batch of lines per read.
 *
 * Why not `request()` and an async iterator over its body: every read then went through a Node
 * Readable, and every line through three async generators (reader, backend relay, core relay) before
 * it reached the route — promises and microtasks per token that were a large share of the gateway's
 * CPU (bench/README.md). Here a read costs one callback, and the consumer's `read()` takes everything
 * that arrived since it last asked (lib/batch-source.ts).
 *
 * A socket read holds many HTTP chunks when Ollama is fast (each of its lines is a chunk of its own),
 * and undici reports each separately: the consumer is woken in a microtask, after the whole read has
 * been parsed, so one read is one batch.
 *
 * Backpressure: a consumer that falls `PAUSE_AFTER_BYTES` behind pauses the socket, so a client that
 * stops reading cannot make the gateway buffer a whole answer.
 */
import type { Dispatcher } from 'undici';
import { onAbort, type CancelSignal } from '../abort';
import { ENDED, nextBatch, type BatchSource } from '../batch-source';
import { OllamaResponseError } from './failures';
import { NdjsonSplitter } from './ndjson';

/** Bytes of lines read and not yet taken by the consumer before the socket is paused. */
const PAUSE_AFTER_BYTES = 64 * 1024;
/** An error answer's body is only read for its message (Ollama's are a line; a proxy's page may be long). */
const MAX_ERROR_BODY_BYTES = 1024 * 1024;

/** Ended by us (the consumer left or stopped reading), not by Ollama. */
export function cancelled(): Error {
  const err = new Error('The request to Ollama was cancelled.');
  err.name = 'AbortError';
  return err;
}

const NO_FAILURE: unique symbol = Symbol('no failure');

export interface AnswerStreamOptions<T> {
  /** Turns one parsed line into what the consumer gets. */
  convert: (line: object) => T;
  /** Whether an item is the answer's final line (`done: true`). */
  isLast: (item: T) => boolean;
  /** The caller's: its abort closes the request at once, which is how Ollama learns to stop. */
  signal: CancelSignal;
  /** Maps a failure after the first line; before it, `ready()` rejects with the raw failure. */
  midStream: (err: unknown) => unknown;
}

export class AnswerStream<T> implements Dispatcher.DispatchHandler, BatchSource<T>, AsyncIterableIterator<T[], undefined> {
  private controller: Dispatcher.DispatchController | null = null;
  private readonly splitter = new NdjsonSplitter();
  /** Lines read and not yet taken by `read()`, in order, and their size on the wire. */
  private queued: T[] = [];
  private queuedBytes = 0;
  private failure: unknown = NO_FAILURE;
  private ended = false;
  private cancelledByUs = false;
  private errorBody: Buffer[] | null = null;
  private errorBytes = 0;
  private status = 0;
  /** A waiting `ready()` or reader, called when something changed. */
  private notify: (() => void) | null = null;
  private wakeScheduled = false;
  private readonly detach: () => void;

  private readonly convert: (line: object) => T;
  private readonly isLast: (item: T) => boolean;
  private readonly midStream: (err: unknown) => unknown;
  /**
   * The final line has been read: the request is complete as far as the consumer cares, and stopping
   * now must not close the connection (only the end of the chunked body is still to come, and the
   * connection is worth keeping alive).
   */
  private lastSeen = false;
  private bytesAfterLast = 0;

  constructor(options: AnswerStreamOptions<T>) {
    this.convert = options.convert;
    this.isLast = options.isLast;
    this.midStream = options.midStream;
    const signal = options.signal;
    if (signal.aborted) {
      this.cancelledByUs = true;
      this.detach = () => undefined;
    } else {
      this.detach = onAbort(signal, () => this.cancel());
    }
  }

  // ---- undici's side ----------------------------------------------------------------------------

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.cancelledByUs) controller.abort(cancelled());
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number): void {
    // The controller is kept for the answer's life (pause, resume, abort) and would keep the raw
    // header Buffers with it, ~0.7 KB a stream in flight (npm run bench:heap); nothing here reads them.
    controller.rawHeaders = null;
    if (statusCode < 200) return; // 1xx: informational, the real answer follows
    this.status = statusCode;
    if (statusCode >= 300) this.errorBody = [];
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.errorBody) {
      if (this.errorBytes < MAX_ERROR_BODY_BYTES) {
        this.errorBody.push(chunk);
        this.errorBytes += chunk.length;
      }
      return;
    }
    if (this.failure !== NO_FAILURE || this.cancelledByUs) return;
    if (this.lastSeen) {
      // Ollama sends nothing after its final line; something in front of it might. It is not queued
      // (nobody reads past the final line) nor held back (nothing would resume the socket), and past a
      // read's worth the connection is closed rather than kept for a body that may never end.
      this.bytesAfterLast += chunk.length;
      if (this.bytesAfterLast > PAUSE_AFTER_BYTES) controller.abort(new Error('Ollama kept sending after its final line.'));
      return;
    }
    const lines: object[] = [];
    this.queuedBytes += chunk.length;
    try {
      this.splitter.push(chunk, lines);
    } catch (err) {
      // The lines before the bad one are delivered first, then the failure; the rest is not read.
      this.deliver(lines);
      this.fail(err);
      controller.abort(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    this.deliver(lines);
    // Only with lines waiting for the consumer: its read is what resumes the socket. A line longer than
    // the limit (the final line of a long /api/generate conversation carries its whole `context`, ~6
    // bytes a token) is read on to its end, however long it is (up to MAX_LINE_BYTES).
    if (this.queuedBytes >= PAUSE_AFTER_BYTES && this.queued.length > 0) controller.pause();
  }

  onResponseEnd(): void {
    if (this.failure !== NO_FAILURE) return;
    if (this.errorBody) {
      const text = Buffer.concat(this.errorBody).toString('utf8');
      this.errorBody = null;
      return this.fail(OllamaResponseError.fromBody(text, this.status));
    }
    const lines: object[] = [];
    try {
      this.splitter.end(lines);
    } catch (err) {
      this.deliver(lines);
      return this.fail(err);
    }
    this.deliver(lines);
    this.ended = true;
    this.detach();
    this.wake();
  }

  /** `controller` is absent when the connection failed before the request was written. */
  onResponseError(_controller: Dispatcher.DispatchController | undefined, err: Error): void {
    if (this.ended || this.failure !== NO_FAILURE) return;
    this.fail(err);
  }

  // ---- the consumer's side ----------------------------------------------------------------------

  /**
   * Settles when the first line has arrived (Ollama sends its headers with the first token); rejects
   * with the raw failure if that came first, or if the answer ended without a line.
   */
  ready(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (this.queued.length > 0) resolve();
        // A body with no line at all is not an answer: a failure before the first token, so the pool
        // may retry it elsewhere and the client gets a real status, not a stream that fails at once.
        else if (this.ended) reject(new SyntaxError('an empty body, without a single line'));
        else if (this.failure !== NO_FAILURE) reject(this.failure);
        else this.notify = check;
      };
      check();
    });
  }

  /** Everything read since the last call, as one batch; `null` when nothing is yet. */
  read(): T[] | null | typeof ENDED {
    if (this.queued.length > 0) return this.take();
    if (this.failure !== NO_FAILURE) throw this.midStream(this.failure);
    return this.ended ? ENDED : null;
  }

  whenReadable(callback: () => void): void {
    this.notify = callback;
    if (this.queued.length > 0 || this.failure !== NO_FAILURE || this.ended) this.wake();
  }

  /** `read()` as a promise, for consumers that want an async iterator (tests). */
  next(): Promise<IteratorResult<T[], undefined>> {
    return nextBatch(this);
  }

  /** The consumer stopped early (`break`, a throw): Ollama is told to stop. */
  return(): Promise<IteratorResult<T[], undefined>> {
    this.cancel();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** Closes the request unless the answer already ended; safe to call more than once. */
  cancel(): void {
    if (this.ended || this.cancelledByUs) return;
    if (this.lastSeen) {
      // Only the end of the body is to come: let undici read it (a paused socket would stay paused)
      // so the connection goes back to the pool.
      this.detach();
      if (this.controller?.paused) this.controller.resume();
      return;
    }
    this.cancelledByUs = true;
    this.detach();
    this.queued = [];
    this.queuedBytes = 0;
    if (this.controller) this.controller.abort(cancelled());
    // Not yet on a socket: onRequestStart aborts it. A consumer still waiting learns it was cancelled.
    if (this.failure === NO_FAILURE) this.fail(cancelled());
  }

  // ---- internals ----------------------------------------------------------------------------------

  private deliver(lines: object[]): void {
    if (lines.length === 0) return;
    for (const line of lines) {
      if (this.lastSeen) break; // nothing after the final line is part of the answer
      const item = this.convert(line);
      if (this.isLast(item)) this.lastSeen = true;
      this.queued.push(item);
    }
    this.wake();
  }

  private take(): T[] {
    const queued = this.queued;
    this.queued = [];
    this.queuedBytes = 0;
    if (this.controller?.paused) this.controller.resume();
    return queued;
  }

  private fail(err: unknown): void {
    this.failure = err;
    this.detach();
    this.wake();
  }

  /** Lets a waiting `ready()` or reader look again, once the read being parsed is done. */
  private wake(): void {
    if (!this.notify || this.wakeScheduled) return;
    this.wakeScheduled = true;
    queueMicrotask(this.runNotify);
  }

  private readonly runNotify = (): void => {
    this.wakeScheduled = false;
    const notify = this.notify;
    this.notify = null;
    notify?.();
  };
}
