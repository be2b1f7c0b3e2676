/**
 * Gathers log lines and hands them to the file writer (pino's sonic-boom) a batch at a time.
 *
 * Why not sonic-boom's own `minLength` buffer: it appends each line to one pending string and measures
 * that whole string's byte length again on every line, which flattens it: a 12 KiB buffer cost about
 * 6 KB of fresh strings a request (V8's sampling heap profiler, `npm run bench:profile` load). Here a
 * batch is a list of lines joined once.
 */
import type pino from 'pino';

/** pino's file writer (sonic-boom), by the type pino gives it. */
type Writer = ReturnType<typeof pino.destination>;

export class LineBatch {
  private lines: string[] = [];
  private chars = 0;
  /** A batch was handed to the writer and it has not said `drain` (everything written) since. */
  private writing = false;
  /** Given up at the end of the process: standard output was not being read. */
  private abandoned = false;

  /** `minChars`: lines are passed on once this many characters wait (about one write per batch). */
  constructor(
    private readonly writer: Writer,
    private readonly minChars: number,
  ) {
    writer.on('drain', () => {
      this.writing = false;
    });
  }

  /** pino's destination method. Never refuses: the writer queues what it cannot write yet. */
  write(line: string): boolean {
    this.lines.push(line);
    this.chars += line.length;
    if (this.chars >= this.minChars) this.pass();
    return true;
  }

  /** Writes what waits (pino's `logger.flush()` calls this); the callback does not wait for the writer. */
  flush(callback?: (err?: Error) => void): void {
    this.pass();
    callback?.();
  }

  /**
   * For the end of the process: writes what waits and calls back once the writer has handed
   * everything to the system (sonic-boom's own flush calls back at once, and a batch still being
   * written would then be lost by `process.exit()`). If it has not within `timeoutMs`, standard output
   * is not being read: what is still queued is abandoned, so that neither this batch's exit hand-over
   * nor sonic-boom's own (a blocking write of up to the whole backlog) holds the process up.
   */
  finish(timeoutMs: number, callback: (abandoned: boolean) => void): void {
    this.pass();
    if (!this.writing) return callback(false);
    const done = (): void => {
      clearTimeout(timer);
      this.writer.off('drain', done);
      callback(false);
    };
    const timer = setTimeout(() => {
      this.writer.off('drain', done);
      this.abandoned = true;
      this.writer.destroy(); // drops its queue; fd 1 itself stays open
      callback(true);
    }, timeoutMs);
    this.writer.once('drain', done);
  }

  /** Writes what waits before returning: for the process's exit. Nothing, once abandoned. */
  flushSync(): void {
    if (this.abandoned) return;
    this.pass();
    this.writer.flushSync();
  }

  private pass(): void {
    if (this.lines.length === 0) return;
    const batch = this.lines.length === 1 ? (this.lines[0] as string) : this.lines.join('');
    this.lines = [];
    this.chars = 0;
    this.writing = true;
    this.writer.write(batch);
  }
}
