/**
 * The gateway's HTTP server builds requests and responses that already have the Express app's
 * prototypes, so Express's per-request prototype change is a no-op (server/express-server.ts).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import v8 from 'node:v8';
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

/**
 * V8's own answer: whether an object keeps fast properties (a hidden class) or has become a dictionary,
 * where every property access is a hash lookup. The flag lets functions compiled after it ask V8.
 */
function fastPropertiesProbe(): (value: object) => boolean {
  v8.setFlagsFromString('--allow-natives-syntax');
  // The probe is V8 syntax, not JavaScript: it can only be compiled at run time.
  return new Function('value', 'return %HasFastProperties(value)') as (value: object) => boolean;
}

test('requests, responses and res.locals keep fast properties through Node and Express', async () => {
  const hasFastProperties = fastPropertiesProbe();
  expect(hasFastProperties({ a: 1 })).toBe(true);
  expect(hasFastProperties(Object.create(null) as object)).toBe(false); // the probe tells the two apart
  const app = express();
  const seen: Record<string, boolean[]> = { bornReq: [], bornRes: [], req: [], res: [], locals: [] };
  app.use(express.json());
  app.post('/chat', (req, res) => {
    res.locals.requestId = 'req_1';
    res.setHeader('X-Probe', '1');
    seen.req?.push(hasFastProperties(req));
    seen.res?.push(hasFastProperties(res));
    seen.locals?.push(hasFastProperties(res.locals));
    res.json({ ok: true });
  });
  const server = createExpressServer(app);
  server.prependListener('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    seen.bornReq?.push(hasFastProperties(req));
    seen.bornRes?.push(hasFastProperties(res));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`http://127.0.0.1:${port}/chat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model":"m"}' });
      expect(await res.json()).toEqual({ ok: true });
    }
    expect(seen).toEqual({ bornReq: [true, true, true], bornRes: [true, true, true], req: [true, true, true], res: [true, true, true], locals: [true, true, true] });
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});
