/**
 * Credentials from every place the API shapes accept them → a Principal, or a 401.
 */
import type { Request, Response } from 'express';
import { GatewayError } from '../lib/errors';
import type { Principal } from '../lib/types';
import { locals } from './context';
import type { Services } from './services';

function header(req: Request, name: string): string | undefined {
  const value = req.headers[name];
  return typeof value === 'string' && value.trim() !== '' ? value.trim() : undefined;
}

/**
 * Covalid: `X-Client-Key` + `X-Client-Secret`. Records the principal on the request context.
 * Every per-request admission check that needs only the principal belongs here, so all routes share it.
 */
export function authenticateClientPair(services: Services, req: Request, res: Response): Principal {
  const clientKey = header(req, 'x-client-key');
  const clientSecret = header(req, 'x-client-secret');
  if (!clientKey || !clientSecret) {
    throw new GatewayError('unauthenticated', 'Missing X-Client-Key or X-Client-Secret header.');
  }
  const principal = services.store.authenticateClient(clientKey, clientSecret);
  if (!principal) throw new GatewayError('unauthenticated', 'Invalid client_key or client_secret.');
  admit(services, res, principal);
  return principal;
}

/**
 * What every authenticated request goes through once the principal is known (it was just read from
 * SQLite, so revocations and limit changes apply at once): expiry, then requests per minute. The
 * X-RateLimit-* headers go on the reply now, so errors and streams carry them as well.
 */
function admit(services: Services, res: Response, principal: Principal): void {
  services.limits.assertNotExpired(principal);
  locals(res).principal = principal;
  for (const [name, value] of Object.entries(services.limits.admitRequest(principal))) res.setHeader(name, value);
}

/** The api_key, from `Authorization: Bearer`, `X-API-Key` or `?api_key=` (AimiChat's three ways). */
export function apiKeyFrom(req: Request): string | undefined {
  const authorization = header(req, 'authorization');
  if (authorization) {
    const match = /^Bearer\s+(\S+)$/i.exec(authorization);
    if (match) return match[1];
  }
  const xApiKey = header(req, 'x-api-key');
  if (xApiKey) return xApiKey;
  const query = req.query['api_key'];
  return typeof query === 'string' && query !== '' ? query : undefined;
}

/** Every route but Covalid's. Records the principal on the request context. */
export function authenticateApiKey(services: Services, req: Request, res: Response): Principal {
  const apiKey = apiKeyFrom(req);
  if (!apiKey) {
    throw new GatewayError('unauthenticated', 'No API key provided. Send it as "Authorization: Bearer <key>", an X-API-Key header, or ?api_key=.');
  }
  const principal = services.store.authenticateApiKey(apiKey);
  if (!principal) throw new GatewayError('unauthenticated', 'Incorrect API key provided.');
  admit(services, res, principal);
  return principal;
}
