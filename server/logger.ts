/**
 * Structured JSON logs (pino) with the request id. Never a secret: no headers, no bodies, no query
 * strings (keys may travel there); only method, path, route label, status, timing and who asked.
 */
import fs from 'node:fs';
import pino, { type DestinationStream, type Logger } from 'pino';
import { locals } from './context';
import { LineBatch } from './log-batch';
import type { ReplyObserver } from './edge';

export type { Logger };

/** Lines are handed to the writer once this many characters wait (about 45 request lines). */
const LOG_BATCH_CHARS = 12 * 1024;

/** Longest a log line waits in the buffer before it is written. */
const LOG_FLUSH_MS = 1_000;

/**
 * Most log output held while standard output is not taken (a stopped `docker logs` reader, a full
 * pipe): past it, lines are dropped rather than the gateway's memory growing until it is killed, and
 * a warning says how much was lost once output moves again. 16 MiB is about 60,000 request lines.
 */
export const LOG_BACKLOG_BYTES = 16 * 1024 * 1024;

export interface LoggerOptions {
  /** See LOG_BACKLOG_BYTES. */
  maxBacklogBytes?: number;
}

export function createLogger(level: string, destination?: DestinationStream, options: LoggerOptions = {}): Logger {
  const pinoOptions = { level, base: { service: 'ollama-gateway' }, timestamp: pino.stdTimeFunctions.isoTime };
  if (destination) return pino(pinoOptions, destination);
  if (level === 'silent') return pino(pinoOptions);
  // Buffered: one write per 12 KiB of lines (about 45 requests) rather than a system call per
  // request (about 0.03 ms of CPU each here). Flushed every second so a quiet gateway's lines still
  // show within one to a reader, and synchronously when the process exits.
  let lines: LineBatch | undefined;
  let logger: Logger | undefined;
  let droppedBytes = 0;
  let reporting = false;
  let warningDropped = false;
  /**
   * Says how much was dropped. If the warning is dropped too (output still blocked), its count is
   * kept for the next try, plus what was dropped with it (the warning's own line included).
   */
  const reportDrops = (): void => {
    if (droppedBytes === 0 || !logger) return;
    const bytes = droppedBytes;
    droppedBytes = 0;
    reporting = true;
    warningDropped = false;
    try {
      logger.warn({ droppedBytes: bytes }, 'log lines dropped: standard output was not being read');
      lines?.flush();
    } finally {
      reporting = false;
    }
    if (warningDropped) droppedBytes += bytes;
  };
  /** When the exit hand-over began: past EXIT_WRITE_MS of a full pipe, the rest is given up. */
  let exitingSince: number | null = null;
  /** A write answered EAGAIN (a full pipe) and waits on sonic-boom's retry timer. */
  let parked = false;
  const handOver = (): void => {
    exitingSince ??= Date.now();
    try {
      reportDrops();
      // The batch's lines first, queued behind whatever the writer holds; then a parked write's text
      // (the writer's "being written" buffer, which its synchronous flush leaves out while a write
      // is under way) is marked as not under way, so that the flush writes it first, then the rest.
      lines?.flush();
      if (parked) (writer as unknown as SonicBoomInternals)._writing = false;
      lines?.flushSync();
    } catch {
      // Output still full past EXIT_WRITE_MS, or failing: given up, and the writer closed so that
      // pino's own exit hand-over does not try again. There is nowhere left to report it.
      writer.destroy();
    }
  };
  // Registered before pino.destination() installs its own hooks (it ends its writer at `beforeExit`
  // and flushes it at `exit`), so the last lines reach the writer before it is ended.
  process.once('beforeExit', handOver);
  process.once('exit', handOver);
  // At least a few batches: a limit below one batch would drop every batch, flowing output or not.
  const maxLength = Math.max(options.maxBacklogBytes ?? LOG_BACKLOG_BYTES, 4 * LOG_BATCH_CHARS);
  const writer = pino.destination({
    dest: standardOutput(),
    minLength: 0,
    sync: false,
    maxLength,
    // Called on EAGAIN (a full pipe on the non-blocking descriptor): retried on a timer while running;
    // at exit, for at most EXIT_WRITE_MS of a reader that does not read.
    retryEAGAIN: () => {
      parked = true;
      // sonic-boom sends the retry from a timer of the same length set just after this one: this
      // fires first, so the buffer counts as parked exactly until its retry is under way (the exit
      // hand-over must not write it a second time while that write is in flight).
      if (exitingSince === null) setTimeout(() => (parked = false), SONIC_BOOM_RETRY_MS).unref();
      return exitingSince === null || Date.now() - exitingSince < EXIT_WRITE_MS;
    },
  });
  writer.on('write', () => {
    parked = false;
  });
  writer.on('drop', (data: string | Buffer) => {
    droppedBytes += Buffer.byteLength(data);
    if (reporting) warningDropped = true;
  });
  const batch = new LineBatch(writer, LOG_BATCH_CHARS);
  lines = batch;
  setInterval(() => {
    reportDrops();
    batch.flush();
  }, LOG_FLUSH_MS).unref();
  logger = pino(pinoOptions, batch);
  batches.set(logger, batch);
  return logger;
}

/**
 * Where the log is written: standard output, and when that is a pipe (docker's log driver, `| less`)
 * or a terminal, a non-blocking opening of it of the log's own. sonic-boom writes from libuv's thread
 * pool; on a blocking descriptor a write to a reader that stopped (a full pipe, a paused terminal)
 * blocks a pool thread for good, and at exit Node waits for its pool threads: the process could not
 * end until someone read. Opened anew (/proc/self/fd/1), non-blocking mode is this descriptor's
 * alone, so other writers to the same output are unaffected; a full pipe then answers EAGAIN, which
 * sonic-boom retries on a timer. A socket (systemd's journal) cannot be opened anew: there a reader
 * that stopped still holds the exit up, until it reads or the service manager kills the process.
 */
function standardOutput(): number {
  try {
    const stat = fs.fstatSync(1);
    if (!stat.isFIFO() && !stat.isCharacterDevice()) return 1;
    return fs.openSync('/proc/self/fd/1', fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
  } catch {
    return 1; // no /proc (not Linux), or /dev/null-like: the shared descriptor, as before
  }
}

/** sonic-boom's wait before it retries a write answered EAGAIN (its BUSY_WRITE_TIMEOUT, not exported). */
const SONIC_BOOM_RETRY_MS = 100;

/**
 * How long an exit that did not go through the shutdown (a crash) waits for a full pipe before giving
 * up the rest: a slow reader gets everything (sonic-boom retries a full pipe every 100 ms, so about
 * 64 KiB each time), a stopped one holds the exit no longer than this.
 */
const EXIT_WRITE_MS = 10_000;

/**
 * The two fields of sonic-boom's writer the exit hand-over needs (sonic-boom 4; its types leave
 * them out): `_writing` makes its synchronous flush leave the parked buffer out.
 */
interface SonicBoomInternals {
  _writing: boolean;
}

/** Each logger createLogger made, with its batch (for finishLog). */
const batches = new WeakMap<Logger, LineBatch>();

/**
 * Before `process.exit()`: waits until the log's last lines are written, at most `timeoutMs`. Past
 * that, standard output is not being read and what is still queued is given up, so that the exit is
 * not held up by it; the result says whether anything was.
 */
export function finishLog(logger: Logger, timeoutMs = 2_000): Promise<{ abandoned: boolean }> {
  const batch = batches.get(logger);
  if (!batch) {
    logger.flush();
    return Promise.resolve({ abandoned: false });
  }
  return new Promise((resolve) => batch.finish(timeoutMs, (abandoned) => resolve({ abandoned })));
}

/** One line per request once its reply is finished or cut (an observer of server/edge.ts). */
export function accessLog(logger: Logger): ReplyObserver {
  return (req, res, startedNs, endedNs) => {
    const ctx = locals(res);
    const status = res.headersSent ? res.statusCode : 499;
    const fields: Record<string, unknown> = {
      reqId: ctx.requestId,
      method: req.method,
      path: req.path,
      status,
      ms: Math.round(Number(endedNs - startedNs) / 1e6),
    };
    if (ctx.route) fields.route = ctx.route;
    if (ctx.model) fields.model = ctx.model;
    if (ctx.principal) Object.assign(fields, { keyId: ctx.principal.keyId, orgId: ctx.principal.orgId });
    if (!res.writableFinished) fields.clientGone = true;
    logger[status >= 500 ? 'warn' : 'info'](fields, 'request');
  };
}

/** For createApp's `logError`: internal errors with their stack, tagged with the request id. */
export function errorLogger(logger: Logger): (err: unknown, requestId: string) => void {
  return (err, requestId) => logger.error({ err, reqId: requestId }, 'internal error');
}
