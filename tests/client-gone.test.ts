/**
 * The client-gone signal is what stops Ollama for a client that left. A client can leave before the
 * handler asks for it (while its request waited for a turn, or while its body was read): the signal
 * must then be aborted from the start, or Ollama would generate for nobody.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Request, Response } from 'express';
import { clientGone } from '../server/context';
import type { CancelSignal } from '../lib/abort';

function serve(handler: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer(handler);
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        close: () => new Promise<void>((done) => {
          server.close(() => done());
          server.closeAllConnections();
        }),
      }),
    ),
  );
}

describe('clientGone', () => {
  test('a client that already left gets an aborted signal', async () => {
    let signal: CancelSignal | undefined;
    const handled = new Promise<void>((resolve) => {
      void serve((req, res) => {
        req.socket.once('close', () => {
          signal = clientGone(req as unknown as Request, res as unknown as Response);
          resolve();
        });
      }).then((s) => {
        const controller = new AbortController();
        fetch(s.url, { method: 'POST', body: '{}', signal: controller.signal }).catch(() => undefined);
        setTimeout(() => controller.abort(), 50);
        void handled.then(() => s.close());
      });
    });
    await handled;
    expect(signal?.aborted).toBe(true);
  });

  test('a client still there gets a live signal, aborted when it leaves, never after a finished reply', async () => {
    const signals: CancelSignal[] = [];
    const s = await serve((req, res) => {
      const signal = clientGone(req as unknown as Request, res as unknown as Response);
      signals.push(signal);
      if (req.url === '/finish') res.end('done');
    });
    expect(await (await fetch(`${s.url}/finish`)).text()).toBe('done');
    expect(signals[0]?.aborted).toBe(false);

    const controller = new AbortController();
    const pending = fetch(`${s.url}/hang`, { signal: controller.signal }).catch(() => undefined);
    while (signals.length < 2) await new Promise((r) => setTimeout(r, 5));
    expect(signals[1]?.aborted).toBe(false);
    controller.abort();
    await pending;
    while (!signals[1]?.aborted) await new Promise((r) => setTimeout(r, 5));
    expect(signals[0]?.aborted).toBe(false);
    await s.close();
  });
});
