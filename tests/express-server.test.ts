/**
 * The gateway's HTTP server builds requests and responses that already have the Express app's
 * prototypes, so Express's per-request prototype change is a no-op (server/express-server.ts).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { createExpressServer } from '../server/express-server';

test('requests and responses arrive with the app prototypes, and Express works on them as usual', async () => {
  const app = express();
  app.get('/hello/:name', (req, res) => {
    res.status(201).set('X-Seen', String(req.get('x-probe'))).json({ name: req.params.name, query: req.query });
  });
  const server = createExpressServer(app);
  const seen: Array<{ req: object | null; res: object | null; isMessage: boolean }> = [];
  // Before Express's own listener: what Node built, untouched by Express.
  server.prependListener('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    seen.push({ req: Object.getPrototypeOf(req) as object | null, res: Object.getPrototypeOf(res) as object | null, isMessage: req instanceof http.IncomingMessage && res instanceof http.ServerResponse });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    const res = await fetch(`http://127.0.0.1:${port}/hello/llama?x=1`, { headers: { 'X-Probe': 'yes' } });
    expect(res.status).toBe(201);
    expect(res.headers.get('x-seen')).toBe('yes');
    expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(await res.json()).toEqual({ name: 'llama', query: { x: '1' } });
    expect(seen).toEqual([{ req: app.request, res: app.response, isMessage: true }]);
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});
