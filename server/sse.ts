/**
 * A small Server-Sent Events writer shared by the streaming API shapes: the headers that keep proxies
 * from buffering, `data:` frames, `[DONE]`, and keep-alive comments while the stream is silent.
 */
import type { Response } from 'express';

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

  constructor(
    private readonly res: Response,
    private readonly keepAliveMs: number = SSE_KEEP_ALIVE_MS,
  ) {}

  /**
   * Sends the status and headers at once, with `first` events when there are any (one packet rather
   * than two); from here on failures can only be written into the stream.
   */
  open(first: readonly unknown[] = []): void {
    this.res.status(200);
    this.res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    this.res.setHeader('Cache-Control', 'no-cache, no-transform');
    this.res.setHeader('X-Accel-Buffering', 'no');
    if (first.length === 0) this.res.flushHeaders();
    for (const event of first) this.data(event);
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

  /** One event: `data: <json>` and a blank line. No `event:` lines (openai-node v4 mishandles them). */
  data(value: unknown): void {
    this.write(`data: ${value instanceof JsonText ? value.text : JSON.stringify(value)}\n\n`);
  }

  /** `data: [DONE]`, then the end of the response. */
  done(): void {
    this.write('data: [DONE]\n\n');
    this.end();
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
  }
}
