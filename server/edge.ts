/**
 * The one middleware before routing: the request id, the security headers, and one `close` listener
 * that tells each observer (metrics, the access log) how the reply ended. One layer and one listener
 * per request where there were four middlewares and three listeners.
 */
import type { Request, RequestHandler, Response } from 'express';
import { startRequest } from './context';
import { SECURITY_HEADERS } from './security-headers';
import type { TurnBudget } from './turn-budget';

/**
 * Told once a reply is finished or cut; `startedNs` is `process.hrtime.bigint()` at its arrival and
 * `endedNs` at its end (the observer itself runs a little later: see `edge`).
 */
export type ReplyObserver = (req: Request, res: Response, startedNs: bigint, endedNs: bigint) => void;

interface EndedReply {
  req: Request;
  res: Response;
  startedNs: bigint;
  endedNs: bigint;
}

/**
 * With `turns`, routing of a request that can start work (not a GET or HEAD) waits for room in the
 * turn's budget (server/turn-budget.ts): a burst of arrivals is routed a few at a time, between the
 * running streams' reads. The request is stamped,
 * given its id and headers, and watched for its end on arrival all the same.
 */
export function edge(observers: readonly ReplyObserver[], turns?: TurnBudget): RequestHandler {
  const headers = new Map(SECURITY_HEADERS);
  /**
   * Replies that ended in this turn of the event loop. Their observers run in its check phase, after
   * every read the turn brought has been relayed: streams tend to end together (a wave of last
   * tokens), and each log line and metric (~20-30 µs) run at once made the later streams' tokens of
   * that wave wait for all of them (500 streams: 5-22 ms at p99 in the last half second, bench/README.md).
   */
  let ended: EndedReply[] = [];
  const observeEnded = (): void => {
    const replies = ended;
    ended = [];
    // An observer that throws is a bug and still takes the process down, as it did from 'close';
    // but only once the batch's other replies have been observed.
    let failure: { error: unknown } | undefined;
    for (const { req, res, startedNs, endedNs } of replies) {
      for (const observe of observers) {
        try {
          observe(req, res, startedNs, endedNs);
        } catch (error) {
          failure ??= { error };
        }
      }
    }
    if (failure) throw failure.error;
  };
  return (req, res, next) => {
    const startedNs = process.hrtime.bigint();
    startRequest(req, res);
    res.setHeaders(headers);
    res.once('close', () => {
      if (ended.length === 0) setImmediate(observeEnded);
      ended.push({ req, res, startedNs, endedNs: process.hrtime.bigint() });
    });
    // Only requests that can start work wait: reads (health checks, listings, balances) answer at once,
    // so a probe with a tight timeout is not held behind a burst.
    if (turns && req.method !== 'GET' && req.method !== 'HEAD') turns.run(() => next());
    else next();
  };
}
