/**
 * A small Server-Sent Events writer shared by the streaming API shapes: the headers that keep proxies
 * from buffering, `data:` frames, `[DONE]`, and keep-alive comments while the stream is silent.
 */
import type { Response } from 'express';
import { drainedWithin } from './unread-reply';

/** Silence after which a `: keep-alive` comment is written, so client body timeouts don't fire. */
export const SSE_KEEP_ALIVE_MS = 10_000;

/**
 * An event's JSON already written out, sent as is. The streams' hottest event (a content delta, one
 * per token) is filled into a template made once per stream instead of serialising the whole chunk
 * object every time.
 */
export class JsonText {
  constructor(readonly text: string) {}
}

export class SseWriter {
  private timer: NodeJS.Timeout | undefined;
  private lastWriteAt = 0;
  private headerFlattened = false;

  constructor(
    private readonly res: Response,
    private readonly keepAliveMs: number = SSE_KEEP_ALIVE_MS,
  ) {}

  /**
   * Sets the status and headers. They go out with the first write, in one packet with the first
   * events; `flush()` sends them at once. From here on failures can only be written into the stream.
   */
  open(): void {
    this.res.status(200);
    this.res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    this.res.setHeader('Cache-Control', 'no-cache, no-transform');
    this.res.setHeader('X-Accel-Buffering', 'no');
    this.lastWriteAt = Date.now();
    if (this.keepAliveMs > 0) {
      // Checked at a finer grain than the interval so a comment goes out about `keepAliveMs` after the last write.
      const tick = Math.max(10, Math.floor(this.keepAliveMs / 4));
      this.timer = setInterval(() => {
        if (Date.now() - this.lastWriteAt >= this.keepAliveMs) this.write(': keep-alive\n\n');
      }, tick);
      this.timer.unref();
    }
  }

  /** Sends the headers now, before there is anything to say (a model still loading). */
  flush(): void {
    if (!this.res.headersSent) this.res.flushHeaders();
  }

  /**
   * Events as one write (`data: <json>` and a blank line each; no `event:` lines, which openai-node v4
   * mishandles). With `last`, `data: [DONE]` and the end of the response go in the same write.
   */
  send(values: readonly unknown[], last = false): void {
    let text = '';
    for (const value of values) text += `data: ${value instanceof JsonText ? value.text : JSON.stringify(value)}\n\n`;
    if (!last) {
      // Nothing to say yet (Ollama's first lines were empty): the headers go out all the same.
      if (text !== '') this.write(text);
      else this.flush();
      return;
    }
    this.stop();
    if (this.res.writableEnded || this.res.destroyed) return;
    this.res.end(`${text}data: [DONE]\n\n`);
  }

  /** Whether the client has not yet taken what was written (past the socket's buffer). */
  get backlogged(): boolean {
    return this.res.writableNeedDrain && !this.res.destroyed;
  }

  /**
   * Waits until the client has taken what was written, so that a client that stops reading stops the
   * relay (and, through the answer stream's backpressure, Ollama) instead of growing a buffer the size
   * of the whole answer. False when the backlog did not shrink for `stallMs` (0: wait for ever): the
   * caller gives up on the client.
   *
   * What the gateway can see is its own backlog, not the client's reads: the kernel's socket buffers
   * (megabytes on a fast link) take what the client reads first, and Linux wakes a blocked writer only
   * once a third of its send buffer is free. A reader slow enough not to free that much within
   * `stallMs` (on loopback, about 20 KB/s against the 60 s default) looks stalled once an answer has
   * filled those buffers — megabytes, far more than a chat answer.
   */
  drained(stallMs: number): Promise<boolean> {
    if (!this.backlogged) return Promise.resolve(true);
    return drainedWithin(this.res, stallMs);
  }

  /** One event. */
  data(value: unknown): void {
    this.send([value]);
  }

  /** `data: [DONE]`, then the end of the response. */
  done(): void {
    this.send([], true);
  }

  end(): void {
    this.stop();
    if (!this.res.writableEnded) this.res.end();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private write(text: string): void {
    if (this.res.writableEnded || this.res.destroyed) return;
    this.lastWriteAt = Date.now();
    this.res.write(text);
    if (!this.headerFlattened) {
      this.headerFlattened = true;
      flattenSentHeader(this.res);
    }
  }
}

/**
 * Node keeps a reply's header block (`res._header`) for the reply's whole life, only to tell that the
 * headers were sent, and keeps it as it was built: a V8 rope of ~40 pieces, one per name, value and
 * separator, ~1.2 KB for every stream in flight, copied by every young collection until promoted.
 * Reading one character makes V8 flatten it into one string (~0.4 KB) and the pieces are freed; the
 * text is the same. Once the headers are written, Node reads only whether it is set.
 */
function flattenSentHeader(res: Response): void {
  const header: unknown = (res as unknown as { _header?: unknown })._header;
  if (typeof header === 'string') header.charCodeAt(0);
}
