/**
 * A reply that has ended but that the client leaves unread: its last bytes wait in the gateway's
 * buffer behind the kernel's, and the connection would stay open for as long as the client likes
 * (Node has no write timeout; the keep-alive timeout starts only once a reply is fully handed to the
 * kernel). Past `stallMs` without the backlog shrinking, the connection is closed.
 */
import type { ServerResponse } from 'node:http';

/** Watches an ended reply until it is handed over, or closes its connection past `stallMs` (0: never). */
export function closeIfUnread(res: ServerResponse, stallMs: number): void {
  if (stallMs <= 0 || res.writableFinished || res.destroyed) return;
  let least = res.writableLength;
  let progressAt = Date.now();
  const watch = setInterval(
    () => {
      if (res.writableFinished || res.destroyed) return clearInterval(watch);
      // Progress is the unsent backlog shrinking: a slow reader is not a stalled one.
      if (res.writableLength < least) {
        least = res.writableLength;
        progressAt = Date.now();
      } else if (Date.now() - progressAt >= stallMs) {
        clearInterval(watch);
        res.destroy();
      }
    },
    Math.max(10, Math.min(1_000, Math.floor(stallMs / 4))),
  );
  watch.unref();
}
