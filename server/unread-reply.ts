/**
 * Replies a client leaves unread. Node has no write timeout, and the keep-alive timeout starts only
 * once a reply is fully handed to the kernel: a client that stops reading holds its connection, and
 * whatever the gateway still had to write, for as long as it likes. What the gateway can see is its
 * own backlog (`writableLength`); a backlog that has not shrunk for `stallMs` counts as given up.
 */
import type { ServerResponse } from 'node:http';
import type { Response } from 'express';

/** The app setting (see createApp) that holds SSE_STALL_MS for replies written outside a stream. */
export const STALL_MS_SETTING = 'unread reply stall ms';
const DEFAULT_STALL_MS = 60_000;

/** The gateway's SSE_STALL_MS, as createApp records it in the app's settings. */
export function stallMsFor(res: Response): number {
  const value: unknown = res.app?.get(STALL_MS_SETTING);
  return typeof value === 'number' ? value : DEFAULT_STALL_MS;
}

/**
 * Calls `onStall` once the unsent backlog has not shrunk for `stallMs` (new writes do not count as
 * progress); returns the watch's stop. Checked a few times per `stallMs`, at most once a second.
 */
function watchBacklog(res: ServerResponse, stallMs: number, onStall: () => void): () => void {
  let least = res.writableLength;
  let progressAt = Date.now();
  const watch = setInterval(
    () => {
      if (res.writableLength < least) {
        least = res.writableLength;
        progressAt = Date.now();
      } else if (Date.now() - progressAt >= stallMs) {
        clearInterval(watch);
        onStall();
      }
    },
    Math.max(10, Math.min(1_000, Math.floor(stallMs / 4))),
  );
  watch.unref();
  return () => clearInterval(watch);
}

/**
 * Waits until the client has taken what was written (`drain`) or is gone (`close`: true, the caller
 * sees its own signal). False when the backlog did not shrink for `stallMs` (0: wait for ever).
 */
export function drainedWithin(res: ServerResponse, stallMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const stopWatch = stallMs > 0 ? watchBacklog(res, stallMs, () => settle(false)) : () => undefined;
    const settle = (ok: boolean) => {
      stopWatch();
      res.off('drain', onDrain);
      res.off('close', onDrain);
      resolve(ok);
    };
    const onDrain = () => settle(true);
    res.on('drain', onDrain);
    res.on('close', onDrain);
  });
}

/**
 * Large bodies go out a slice at a time. The backlog only shrinks when a whole write has been taken,
 * so a body written at once (megabytes) would look stalled to a client that reads it steadily but
 * slowly; a slice at a time, a client has to take only a slice per `stallMs`. 64 KiB: about one
 * socket buffer's worth, and few enough writes for a fast client.
 */
export const SLICE_BYTES = 64 * 1024;

/**
 * Writes `data` a slice at a time, each once the one before has been taken. False when the client
 * left, or took nothing for `stallMs` (its connection is then closed).
 */
export async function writeInSlices(res: ServerResponse, data: Buffer, stallMs: number): Promise<boolean> {
  for (let offset = 0; offset < data.length; offset += SLICE_BYTES) {
    if (res.destroyed) return false;
    if (!res.write(data.subarray(offset, offset + SLICE_BYTES)) && !(await drainedWithin(res, stallMs))) {
      res.destroy();
      return false;
    }
  }
  return !res.destroyed;
}

/** `writeInSlices`, then the end of the reply, watched like any ended reply (`closeIfUnread`). */
export async function endInSlices(res: ServerResponse, data: Buffer, stallMs: number): Promise<void> {
  if (!(await writeInSlices(res, data, stallMs))) return;
  res.end();
  closeIfUnread(res, stallMs);
}

/** Watches an ended reply until it is handed over, or closes its connection past `stallMs` (0: never). */
export function closeIfUnread(res: ServerResponse, stallMs: number): void {
  if (stallMs <= 0 || res.writableFinished || res.destroyed) return;
  const stopWatch = watchBacklog(res, stallMs, () => res.destroy());
  // Handed over (finish) or gone (close): nothing left to watch.
  res.once('close', stopWatch);
}
