/**
 * The one place errors become replies. Body-parser and routing failures are turned into
 * GatewayErrors first; internal errors are logged with their stack and never shown.
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

interface BodyParserError {
  type: string;
  status?: number;
  limit?: number;
}

function isBodyParserError(err: unknown): err is BodyParserError & Error {
  return err instanceof Error && typeof (err as Partial<BodyParserError>).type === 'string';
}

export function normalise(err: unknown): GatewayError {
  if (isBodyParserError(err)) {
    if (err.type === 'entity.parse.failed') return new GatewayError('invalid_request', 'The request body is not valid JSON.');
    if (err.type === 'entity.too.large') {
      return new GatewayError('payload_too_large', `The request body is larger than the limit of ${err.limit ?? '?'} bytes.`);
    }
    if (err.type === 'encoding.unsupported' || err.type === 'charset.unsupported') {
      return new GatewayError('invalid_request', err.message);
    }
  }
  return toGatewayError(err);
}

export function errorHandler(deps: ErrorHandlerDeps) {
  return (err: unknown, req: Request, res: Response, _next: NextFunction): void => {
    const error = normalise(err);
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
