/**
 * SseWriter.drained: how long the relay waits for a client that has not taken what was sent. It gives
 * up only on a client that takes nothing at all for `stallMs`, never on a slow one that keeps reading.
 * The response is a stand-in with the two properties and events the writer reads, driven by hand.
 */
import { EventEmitter } from 'node:events';
import type { Response } from 'express';
import { SseWriter } from '../server/sse';

class Backlog extends EventEmitter {
  writableNeedDrain = true;
  writableLength = 1_000_000;
  destroyed = false;
  /** The client took `bytes`; at the end of the backlog the socket drains. */
  take(bytes: number): void {
    this.writableLength = Math.max(0, this.writableLength - bytes);
    if (this.writableLength === 0) {
      this.writableNeedDrain = false;
      this.emit('drain');
    }
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('SseWriter.drained', () => {
  test('a backlog that does not shrink for stallMs is given up', async () => {
    const res = new Backlog();
    const started = Date.now();
    expect(await new SseWriter(res as unknown as Response, 0).drained(200)).toBe(false);
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    expect(res.listenerCount('drain') + res.listenerCount('close')).toBe(0);
  });

  test('a backlog that keeps shrinking is waited for well past stallMs', async () => {
    const res = new Backlog();
    const wait = new SseWriter(res as unknown as Response, 0).drained(400);
    let settled: boolean | undefined;
    void wait.then((ok) => (settled = ok));
    for (let i = 0; i < 19; i++) {
      await sleep(60);
      res.take(50_000); // 1.1 s in all, almost three times stallMs (and a busy machine's sleeps have room)
      expect(settled).toBeUndefined();
    }
    res.take(Infinity);
    expect(await wait).toBe(true);
  });

  test('new writes while waiting (keep-alive comments) are not progress', async () => {
    const res = new Backlog();
    const wait = new SseWriter(res as unknown as Response, 0).drained(200);
    const keepAlive = setInterval(() => (res.writableLength += 14), 20);
    try {
      expect(await wait).toBe(false);
    } finally {
      clearInterval(keepAlive);
    }
  });

  test('a client that leaves ends the wait at once; 0 waits for ever', async () => {
    const res = new Backlog();
    const wait = new SseWriter(res as unknown as Response, 0).drained(60_000);
    res.emit('close');
    expect(await wait).toBe(true);
    const forever = new SseWriter(res as unknown as Response, 0).drained(0);
    let settled = false;
    void forever.then(() => (settled = true));
    await sleep(100);
    expect(settled).toBe(false);
    res.take(Infinity);
    expect(await forever).toBe(true);
  });
});
