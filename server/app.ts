/**
 * Builds the Express app: the edge middleware (request id, security headers, metrics, access log), the
 * API shapes' routers, JSON 404s and one error handler.
 */
import express, { type Express, type Request, type RequestHandler, type Response, type Router } from 'express';
import { locals } from './context';
import { ainowErrorFormat, ainowRouter, isAinowPath } from './dialects/ainow';
import { covalidErrorFormat, covalidRoutes, COVALID_PATH } from './dialects/covalid';
import { envelopeErrorFormat, envelopeRouter, isEnvelopePath } from './dialects/envelope';
import { openaiErrorFormat } from './dialects/openai/errors';
import { OPENAI_PREFIX, openaiRoutes } from './dialects/openai/router';
import { MODERATIONS_PATH, openaiModerationsRouter } from './dialects/openai-moderations';
import { plainErrorFormat, type ErrorFormat } from './error-format';
import type { DirectRoutes } from './dialects/shared';
import { edge } from './edge';
import { errorHandler, notFound } from './error-handler';
import { healthRouter } from './health';
import { accessLog, errorLogger } from './logger';
import { metricsRouter } from './metrics';
import type { Services } from './services';
import { STALL_MS_SETTING } from './unread-reply';
import type { GatewayError } from '../lib/errors';

export interface AppOptions {
  logError?: (err: unknown, requestId: string) => void;
}

/**
 * Which API shape a path belongs to decides the format of its errors, 404s included: judged on the
 * same key the routers are chosen by, so `/V1/models/` fails in the OpenAI shape it is served in.
 */
function errorFormatFor(rawPath: string): ErrorFormat {
  const path = routeKey(rawPath);
  if (path === COVALID_PATH) return covalidErrorFormat;
  if (path === MODERATIONS_PATH) return openaiErrorFormat;
  if (path === OPENAI_PREFIX || path.startsWith(`${OPENAI_PREFIX}/`)) return openaiErrorFormat;
  if (isAinowPath(path)) return ainowErrorFormat;
  if (isEnvelopePath(path)) return envelopeErrorFormat;
  return plainErrorFormat;
}

export function createApp(services: Services, options: AppOptions = {}): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('trust proxy', false);
  // How long a reply may sit unread before its connection is closed (server/unread-reply.ts).
  app.set(STALL_MS_SETTING, services.config.SSE_STALL_MS);
  app.use(edge([services.metrics.observeReply, accessLog(services.logger)], services.turns));

  const openai = openaiRoutes(services);
  const covalid = covalidRoutes(services);
  app.use(
    byPath(new Map([...openai.direct, ...covalid.direct]), [
      [(key) => key === '/health' || key === '/ready', healthRouter(services)],
      [(key) => key === '/metrics', metricsRouter(services.metrics)],
      // Before the /v1 router, whose catch-all 404 would otherwise answer for /v1/moderations.
      [(key) => key === MODERATIONS_PATH, openaiModerationsRouter(services)],
      [(key) => key === OPENAI_PREFIX || key.startsWith(`${OPENAI_PREFIX}/`), openai.router],
      [isAinowPath, ainowRouter(services)],
      [isEnvelopePath, envelopeRouter(services)],
      [(key) => key === COVALID_PATH, covalid.router],
    ]),
  );

  app.use(notFound);
  app.use(
    errorHandler({
      formatFor: errorFormatFor,
      recordFailure: (req: Request, res: Response, err: GatewayError) => recordFailure(services, req, res, err),
      logError: options.logError ?? errorLogger(services.logger),
    }),
  );
  return app;
}

/** A path as Express matches routes against it: in any case, one trailing slash ignored. */
function routeKey(path: string): string {
  const lower = path.toLowerCase();
  return lower.length > 1 && lower.endsWith('/') ? lower.slice(0, -1) : lower;
}

/** Which paths a router serves, by their route key. */
type ServedBy = readonly [serves: (key: string) => boolean, router: Router];

/**
 * Calls a direct route's handler when there is one for the method and path (the hottest routes, no
 * router walk); else enters each router only for the paths it serves, in order: Express would otherwise walk into every
 * router, and through each of its layers, for every request. One layer for all of them, so the path
 * is looked at once a request rather than once a router (Express's `next` between layers is a few
 * microseconds each on the hottest path there is). A router that passes the request on (`next()`)
 * hands it to the next router that serves its path, as separate layers did.
 */
function byPath(direct: DirectRoutes, routers: readonly ServedBy[]): RequestHandler {
  return (req, res, next) => {
    const key = routeKey(req.path);
    const handler = direct.get(`${req.method} ${key}`);
    if (handler) {
      // As Express's router would have it: the metrics label a reply refused before the route set
      // its own label (a body that is not JSON) by the route's path.
      (req as { route?: unknown }).route = { path: key };
      handler(req, res, next);
      return;
    }
    let index = 0;
    const tryNext = (err?: unknown): void => {
      // Express passes an error, or nothing (also for next('router'), which leaves that router).
      if (err !== undefined && err !== null) {
        next(err);
        return;
      }
      while (index < routers.length) {
        const [serves, router] = routers[index++] as ServedBy;
        if (serves(key)) {
          router(req, res, tryNext);
          return;
        }
      }
      next();
    };
    tryNext();
  };
}

/** Failed API calls are logged as usage too (status and latency), so an operator sees refusals. */
function recordFailure(services: Services, _req: Request, res: Response, err: GatewayError): void {
  const ctx = locals(res);
  if (!ctx.route) return; // not an API route (404s, health): nothing to account for
  services.store.recordUsage({
    requestId: ctx.requestId,
    route: ctx.route,
    principal: ctx.principal ?? null,
    model: ctx.model ?? null,
    promptTokens: 0,
    completionTokens: 0,
    costMicro: 0,
    status: err.status,
    errorCode: err.code,
    latencyMs: Date.now() - ctx.startedAt,
  });
}
