/**
 * Small pieces every dialect uses. Nothing here renders a reply: an error is thrown as a GatewayError
 * and each dialect's own error format (chosen by path in app.ts) gives it its shape.
 */
import type { RequestHandler, Router } from 'express';
import { GatewayError } from '../../lib/errors';
import { bytesOf, readJsonBody } from '../json-body';
import type { Services } from '../services';

/**
 * Every dialect's body parser: JSON whatever the Content-Type (the documented clients do not all send
 * one), up to BODY_LIMIT; a body over the limit or not JSON becomes the dialect's own 413 or 400.
 */
export function jsonBody(services: Services): RequestHandler {
  const limit = bytesOf(services.config.BODY_LIMIT);
  return (req, _res, next) => {
    readJsonBody(req, limit).then((body) => {
      req.body = body;
      // Once the body is in, the request starts within this turn's budget (or the next turn's): the
      // synchronous work of starting it must not hold up running streams in a burst of arrivals.
      services.turns.run(() => next());
    }, next);
  };
}

/**
 * Middleware run in order as one handler, for the routes app.ts calls without Express's router (the
 * hottest: its walk through layers was a few microseconds of every request). An error, thrown or from
 * a rejected promise, goes to `next`, as Express 5 sends it to the error handler.
 */
export function inOrder(...handlers: RequestHandler[]): RequestHandler {
  return (req, res, next) => {
    let index = 0;
    const step = (err?: unknown): void => {
      if (err !== undefined && err !== null) return next(err);
      const handler = handlers[index++];
      if (!handler) return next();
      try {
        const result: unknown = handler(req, res, step);
        if (result instanceof Promise) result.catch((failure: unknown) => next(failure ?? new Error('Rejected without a reason.')));
      } catch (failure) {
        next(failure);
      }
    };
    step();
  };
}

/** Handlers app.ts calls directly, by `METHOD /path` (the path as routeKey makes it: lower case, no trailing slash). */
export type DirectRoutes = ReadonlyMap<string, RequestHandler>;

/** A JSON object: not null, not an array. */
export function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A body's fields; any other body (an array, a string, none) has none, so each field reads as missing. */
export function fieldsOf(body: unknown): Record<string, unknown> {
  return isJsonObject(body) ? body : {};
}

/**
 * A 405 with `Allow` for any other method on each of `routes` (path → the one method it takes), under
 * `prefix`. Mount it after the routes' own handlers, which answer the method they take.
 */
export function refuseOtherMethods(router: Router, routes: Readonly<Record<string, string>>, prefix = ''): void {
  for (const [path, method] of Object.entries(routes)) {
    router.all(`${prefix}${path}`, () => {
      throw new GatewayError('method_not_allowed', `Only ${method} is allowed on ${prefix}${path}.`, { headers: { Allow: method } });
    });
  }
}
