/**
 * Per-request context kept on `res.locals`: the request id, the route label for the usage log, and
 * an abort signal that fires when the client goes away.
 */
import { randomUUID } from 'node:crypto';
import type { Request, Response } from 'express';
import { ownAbort, type CancelSignal } from '../lib/abort';
import type { Principal } from '../lib/types';

export interface RequestLocals {
  requestId: string;
  startedAt: number;
  route?: string;
  principal?: Principal;
  model?: string;
}

export function locals(res: Response): RequestLocals {
  return res.locals as RequestLocals;
}

/** Incoming ids are kept when they look like ids (no spaces or control characters, bounded length). */
const WELL_FORMED_ID = /^[A-Za-z0-9._:\-]{8,128}$/;

/** Gives the request its context and sets `X-Request-Id` on its reply, keeping a well-formed incoming id. */
export function startRequest(req: Request, res: Response): void {
  const incoming = req.headers['x-request-id'];
  const id = typeof incoming === 'string' && WELL_FORMED_ID.test(incoming) ? incoming : `req_${randomUUID().replaceAll('-', '')}`;
  res.locals.requestId = id;
  res.locals.startedAt = Date.now();
  res.setHeader('X-Request-Id', id);
}

/** A signal aborted when the client closes the connection before the reply was fully written. */
export function clientGone(req: Request, res: Response): CancelSignal {
  // Aborted by us, so the core's listeners are told directly (lib/abort.ts says why that matters).
  const gone = ownAbort();
  // The client may already be gone: it left while its request waited for a turn (server/turn-budget.ts)
  // or while its body was read, and 'close' has been emitted before anyone listened.
  if (req.socket.destroyed && !res.writableFinished) {
    gone.abort();
    return gone.signal;
  }
  res.on('close', () => {
    if (!res.writableFinished) gone.abort();
  });
  return gone.signal;
}
