/**
 * The one place errors become replies. Everything thrown is a GatewayError or becomes one (an
 * unexpected error is `internal`: logged with its stack, never shown).
 */
import type { NextFunction, Request, Response } from 'express';
import { GatewayError, toGatewayError } from '../lib/errors';
import { locals } from './context';
import type { ErrorFormat } from './error-format';

export interface ErrorHandlerDeps {
  formatFor(path: string): ErrorFormat;
  /** Called for every error reply that the core did not already log as usage. */
  recordFailure(req: Request, res: Response, err: GatewayError): void;
  logError(err: unknown, requestId: string): void;
}

export function errorHandler(deps: ErrorHandlerDeps) {
  return (err: unknown, req: Request, res: Response, _next: NextFunction): void => {
    const error = toGatewayError(err);
    const { requestId } = locals(res);
    if (error.code === 'internal') deps.logError(err, requestId);
    if (res.headersSent) {
      // A stream that already began: its dialect writes in-stream errors; all that is left is to end it.
      res.end();
      return;
    }
    if (!error.recorded) deps.recordFailure(req, res, error);
    const reply = deps.formatFor(req.path)(error, requestId);
    res.status(reply.status).set(reply.headers).json(reply.body);
  };
}

/** Unknown paths: a 404 in the format of the API shape the path belongs to. */
export function notFound(req: Request, _res: Response, next: NextFunction): void {
  next(new GatewayError('not_found', `No route for ${req.method} ${req.path}.`));
}
