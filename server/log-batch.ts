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

  /**
   * Writes what waits (pino's `logger.flush()` calls this) and calls back once the writer has handed
   * everything to the system, or after `timeoutMs` (standard output may be blocked). sonic-boom's own
   * flush calls back at once: the batch it is writing could then be lost by a `process.exit()`.
   */
  flush(callback?: (err?: Error) => void, timeoutMs = 2_000): void {
    this.pass();
    if (!callback) return;
    if (!this.writing) return callback();
    const done = (): void => {
      clearTimeout(timer);
      this.writer.off('drain', done);
      callback();
    };
    const timer = setTimeout(done, timeoutMs);
    this.writer.once('drain', done);
  }

  /** Writes what waits before returning: for the process's exit. */
  flushSync(): void {
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
