/**
 * A JSON reply without Express's `res.json` → `res.send`: the same bytes and headers, minus the
 * charset parsing, ETag and freshness logic that none of the API's answers use (about 0.04 ms a
 * request in `npm run bench:profile`, on the hottest path there is).
 */
import type { Response } from 'express';
import { closeIfUnread, endInSlices, SLICE_BYTES, stallMsFor } from './unread-reply';

export function replyJson(res: Response, value: unknown, status = 200): void {
  const body = JSON.stringify(value);
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  if (body.length > SLICE_BYTES / 3) {
    // Possibly more than a slice (a long answer, many embeddings): written a slice at a time, so a
    // client that reads slowly gets all of it and one that never reads does not hold it for ever.
    const data = Buffer.from(body);
    res.setHeader('Content-Length', data.length);
    // Nothing in it rejects; were it ever to, the connection is closed rather than the process taken down.
    endInSlices(res, data, stallMsFor(res)).catch(() => res.destroy());
    return;
  }
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(body);
  // Past what the kernel took at once (a client that stopped reading): watched, so it does not
  // hold the connection for ever.
  if (res.writableLength > 0) closeIfUnread(res, stallMsFor(res));
}
