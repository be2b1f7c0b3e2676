/**
 * Structured JSON logs (pino) with the request id. Never a secret: no headers, no bodies, no query
 * strings (keys may travel there); only method, path, route label, status, timing and who asked.
 */
import pino, { type DestinationStream, type Logger } from 'pino';
import { locals } from './context';
import { LineBatch } from './log-batch';
import type { ReplyObserver } from './edge';

export type { Logger };

/** Longest a log line waits in the buffer before it is written. */
const LOG_FLUSH_MS = 1_000;

export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = { level, base: { service: 'ollama-gateway' }, timestamp: pino.stdTimeFunctions.isoTime };
  if (destination) return pino(options, destination);
  if (level === 'silent') return pino(options);
  // Buffered: one write per 12 KiB of lines (about 45 requests) rather than a system call per
  // request (about 0.03 ms of CPU each here). Flushed every second so a quiet gateway's lines still
  // show within one to a reader, and synchronously when the process exits.
  let lines: LineBatch | undefined;
  const handOver = (): void => {
    try {
      lines?.flushSync();
    } catch {
      // Exiting: there is nowhere left to report a failed write to standard output.
    }
  };
  // Registered before pino.destination() installs its own hooks (it ends its writer at `beforeExit`
  // and flushes it at `exit`), so the last lines reach the writer before it is ended.
  process.once('beforeExit', handOver);
  process.once('exit', handOver);
  const batch = new LineBatch(pino.destination({ dest: 1, minLength: 0, sync: false }), 12 * 1024);
  lines = batch;
  setInterval(() => batch.flush(), LOG_FLUSH_MS).unref();
  return pino(options, batch);
}

/** One line per request once its reply is finished or cut (an observer of server/edge.ts). */
export function accessLog(logger: Logger): ReplyObserver {
  return (req, res) => {
    const ctx = locals(res);
    const status = res.headersSent ? res.statusCode : 499;
    const fields: Record<string, unknown> = {
      reqId: ctx.requestId,
      method: req.method,
      path: req.path,
      status,
      ms: Date.now() - ctx.startedAt,
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
