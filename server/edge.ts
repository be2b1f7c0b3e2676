/**
 * The one middleware before routing: the request id, the security headers, and one `close` listener
 * that tells each observer (metrics, the access log) how the reply ended. One layer and one listener
 * per request where there were four middlewares and three listeners.
 */
import type { Request, RequestHandler, Response } from 'express';
import { startRequest } from './context';
import { SECURITY_HEADERS } from './security-headers';

/** Told once a reply is finished or cut; `startedNs` is `process.hrtime.bigint()` at its arrival. */
export type ReplyObserver = (req: Request, res: Response, startedNs: bigint) => void;

export function edge(observers: readonly ReplyObserver[]): RequestHandler {
  const headers = new Map(SECURITY_HEADERS);
  return (req, res, next) => {
    const startedNs = process.hrtime.bigint();
    startRequest(req, res);
    res.setHeaders(headers);
    res.once('close', () => {
      for (const observe of observers) observe(req, res, startedNs);
    });
    next();
  };
}
