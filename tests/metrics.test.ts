/**
 * GET /metrics (Prometheus text) and the JSON access log (request id, never a secret).
 */
import { Writable } from 'node:stream';
import express from 'express';
import { startHarness, postJson, type Harness } from './support/harness';
import { edge } from '../server/edge';
import { accessLog, createLogger } from '../server/logger';
import { listen } from '../server/listen';

jest.setTimeout(30_000);

describe('GET /metrics', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(() => h.close());

  test('counts requests, tokens, first-token time, queue, in-flight and host health', async () => {
    const key = h.createKey();
    const auth = { 'X-Client-Key': key.clientKey, 'X-Client-Secret': key.clientSecret };
    const ok = await postJson(`${h.url}/api/chat.php`, { prompt: 'count these words' }, auth);
    expect(ok.status).toBe(200);
    expect((await postJson(`${h.url}/api/chat.php`, { prompt: 'x', model: 'made-up-name' }, auth)).status).toBe(404);

    const res = await fetch(`${h.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    expect(text).toContain('gateway_requests_total{route="covalid.chat",status="200",model="covalid-1.0"} 1');
    // A made-up model name never becomes a label.
    expect(text).toContain('gateway_requests_total{route="covalid.chat",status="404",model=""} 1');
    expect(text).not.toContain('made-up-name');
    expect(text).toContain(`gateway_tokens_total{direction="in",model="covalid-1.0"} ${ok.body.prompt_tokens}`);
    expect(text).toContain(`gateway_tokens_total{direction="out",model="covalid-1.0"} ${ok.body.completion_tokens}`);
    expect(text).toContain(`gateway_time_to_first_token_seconds_count{model="llama3.2",backend="${h.double.url}"} 1`);
    expect(text).toMatch(/gateway_request_duration_seconds_count\{route="covalid.chat",status="200"\} 1/);
    expect(text).toContain('gateway_queue_depth 0');
    expect(text).toContain(`gateway_backend_in_flight{backend="${h.double.url}"} 0`);
    expect(text).toContain(`gateway_backend_up{backend="${h.double.url}"} 1`);
    expect(text).toContain(`gateway_backend_state{backend="${h.double.url}",state="cooling"} 0`);
    expect(text).toContain('process_cpu_user_seconds_total');
  });

  test('/v1/chat/completions (called without the router walk): labelled by its route, also when refused before auth', async () => {
    const key = h.createKey();
    const ok = await postJson(`${h.url}/v1/chat/completions`, { model: 'covalid-1.0', messages: [{ role: 'user', content: 'hi' }] }, { Authorization: `Bearer ${key.apiKey}` });
    expect(ok.status).toBe(200);
    const badJson = await fetch(`${h.url}/V1/Chat/Completions/`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{not json' });
    expect(badJson.status).toBe(400);
    expect((await badJson.json()) as unknown).toMatchObject({ error: { type: 'invalid_request_error' } });
    const unauthenticated = await postJson(`${h.url}/v1/chat/completions`, { model: 'covalid-1.0', messages: [{ role: 'user', content: 'hi' }] }, { Authorization: 'Bearer nope' });
    expect(unauthenticated.status).toBe(401);
    const wrongMethod = await fetch(`${h.url}/v1/chat/completions`);
    expect(wrongMethod.status).toBe(404); // other methods still go through the router, to its 404
    expect((await wrongMethod.json()) as unknown).toMatchObject({ error: { type: 'invalid_request_error' } });
    const text = await (await fetch(`${h.url}/metrics`)).text();
    expect(text).toContain('gateway_requests_total{route="openai.chat",status="200",model="covalid-1.0"} 1');
    expect(text).toContain('gateway_requests_total{route="/v1/chat/completions",status="400",model=""} 1');
    expect(text).toContain('gateway_requests_total{route="openai.chat",status="401",model=""} 1');
  });
});

describe('reply observers', () => {
  test("run after the turn's other work, with the time the reply ended", async () => {
    const order: string[] = [];
    let observed: { startedNs: bigint; endedNs: bigint; calledNs: bigint } | undefined;
    const app = express();
    app.use(
      edge([
        (_req, _res, startedNs, endedNs) => {
          order.push('observer');
          observed = { startedNs, endedNs, calledNs: process.hrtime.bigint() };
        },
      ]),
    );
    app.get('/slow-turn', (_req, res) => {
      // What else the turn that ends this reply does (relaying other streams' tokens): 30 ms of it.
      res.on('close', () => {
        order.push('rest of the turn');
        const until = Date.now() + 30;
        while (Date.now() < until);
      });
      res.json({ ok: true });
    });
    const server = await listen(app, '127.0.0.1', 0);
    try {
      expect((await fetch(`${server.url}/slow-turn`)).status).toBe(200);
      await new Promise((resolve) => setTimeout(resolve, 50));
    } finally {
      await server.close(100);
    }
    expect(order).toEqual(['rest of the turn', 'observer']);
    const { startedNs, endedNs, calledNs } = observed as NonNullable<typeof observed>;
    // The duration observed is the reply's, not the wait for the turn's end.
    expect(endedNs).toBeGreaterThan(startedNs);
    expect(calledNs - endedNs).toBeGreaterThanOrEqual(25_000_000n);
  });
});

describe('access log', () => {
  test('one JSON line per request with its id, status and timing; no headers, body or query', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
        done();
      },
    });
    const app = express();
    app.use(edge([accessLog(createLogger('info', sink))]));
    app.post('/echo', express.json(), (_req, res) => void res.json({ ok: true }));
    const server = await listen(app, '127.0.0.1', 0);
    try {
      const res = await fetch(`${server.url}/echo?api_key=sk-query-secret`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: 'Bearer sk-header-secret', 'X-Request-Id': 'log-check-000001' },
        body: JSON.stringify({ prompt: 'body-secret' }),
      });
      expect(res.status).toBe(200);
    } finally {
      await server.close(100);
    }
    expect(lines).toHaveLength(1);
    const entry = JSON.parse(lines[0] as string) as Record<string, unknown>;
    expect(entry).toMatchObject({ level: 30, msg: 'request', reqId: 'log-check-000001', method: 'POST', path: '/echo', status: 200 });
    expect(typeof entry.ms).toBe('number');
    expect(typeof entry.time).toBe('string');
    for (const secret of ['sk-query-secret', 'sk-header-secret', 'body-secret']) expect(lines[0]).not.toContain(secret);
  });
});
