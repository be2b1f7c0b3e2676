/**
 * Graceful shutdown, in-process (what main.ts does on SIGTERM/SIGINT): stop accepting, let running
 * requests finish within the grace period, cut the rest (Ollama is aborted), close the database.
 */
import http from 'node:http';
import net from 'node:net';
import express from 'express';
import { edge } from '../server/edge';
import { listen } from '../server/listen';
import { until } from './support/until';
import { startHarness, type Harness } from './support/harness';
import { closeServices } from '../server/services';
import { Store } from '../db/store';

jest.setTimeout(30_000);

test('a reply that finishes during a graceful close is observed by the time close() resolves (review)', async () => {
  // main.ts goes on from close() to finishing the log and exiting, possibly within the same turn.
  const seen: number[] = [];
  const app = express();
  app.use(edge([(_req, res) => seen.push(res.headersSent ? res.statusCode : 499)]));
  let reached!: () => void;
  const inHandler = new Promise<void>((resolve) => (reached = resolve));
  app.get('/slow', (_req, res) => {
    reached();
    setTimeout(() => res.status(401).json({ error: 'no' }), 100); // no Ollama involved
  });
  const server = await listen(app, '127.0.0.1', 0);
  const got = new Promise<number>((resolve, reject) =>
    http.get(`${server.url}/slow`, (r) => {
      r.resume();
      resolve(r.statusCode ?? 0);
    }).on('error', reject),
  );
  await inHandler;
  await server.close(5_000);
  expect(seen).toEqual([401]);
  expect(await got).toBe(401);
});

test('close() still resolves with a pipelined request queued behind one that never answers (review)', async () => {
  const seen: string[] = [];
  const app = express();
  app.use(edge([(req) => seen.push(req.url)]));
  app.get('/slow', () => undefined); // never answers: cut at the end of the grace period
  app.get('/fast', (_req, res) => res.send('ok'));
  const server = await listen(app, '127.0.0.1', 0);
  const socket = net.connect(Number(new URL(server.url).port), '127.0.0.1');
  socket.on('error', () => undefined);
  await new Promise((resolve) => socket.once('connect', resolve));
  // Two requests in one write: the second's reply waits for the first's, with no socket of its own.
  socket.write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /fast HTTP/1.1\r\nHost: x\r\n\r\n');
  await new Promise((resolve) => setTimeout(resolve, 100));
  const outcome = await Promise.race([
    server.close(300).then(() => 'resolved'),
    new Promise((resolve) => setTimeout(() => resolve('hung'), 5_000)),
  ]);
  expect(outcome).toBe('resolved');
  expect(seen).toEqual(['/slow']); // the cut reply is observed; the queued one never started
  socket.destroy();
});

describe('graceful shutdown', () => {
  let h: Harness;
  let auth: Record<string, string>;
  const chat = (prompt: string) =>
    fetch(`${h.url}/api/chat.php`, { method: 'POST', headers: { 'Content-Type': 'application/json', ...auth }, body: JSON.stringify({ prompt }) });

  beforeEach(async () => {
    h = await startHarness({ double: { tokenDelayMs: 50 } });
    const key = h.createKey();
    auth = { 'X-Client-Key': key.clientKey, 'X-Client-Secret': key.clientSecret };
    // Warm a keep-alive connection, as a real client would hold one.
    expect((await chat('warm')).status).toBe(200);
  });
  afterEach(() => h.close().catch(() => undefined));

  test('a request in flight finishes; new connections are refused; then the database is closed', async () => {
    const words = Array.from({ length: 20 }, (_, i) => `w${i} `);
    h.double.queue.push({ kind: 'reply', tokens: words });
    const running = chat('long');
    await until(() => (h.double.generations()[1]?.linesSent ?? 0) >= 2, 'the answer to be under way');

    const closing = h.server.close(20_000);
    await expect(fetch(`${h.url}/health`)).rejects.toThrow();

    const res = await running;
    expect(res.status).toBe(200);
    expect(((await res.json()) as { response: string }).response).toBe(words.join(''));
    await closing; // resolves once the last connection is gone, well before the grace period
    expect(h.double.generations()[1]?.aborted).toBe(false);

    await closeServices(h.services);
    expect(h.store.db.open).toBe(false);
  });

  test("the last replies' metrics and access-log lines are written before close() resolves", async () => {
    h.double.queue.push({ kind: 'reply', tokens: ['last ', 'words'] });
    const running = chat('last');
    await until(() => (h.double.generations()[1]?.linesSent ?? 0) >= 1, 'the answer to be under way');
    const closing = h.server.close(20_000);
    expect((await running).status).toBe(200);
    await closing;
    // Straight after close(), with no turn of the event loop between: what main.ts does next is
    // finishing the log and exiting. The observers (server/edge.ts) must have run by then.
    const text = await h.services.metrics.registry.metrics();
    expect(text).toMatch(/gateway_requests_total\{route="covalid\.chat",status="200",model="[^"]*"\} 2\n/);
  });

  test('an SSE stream in flight is relayed to its [DONE] before the process goes, and billed once', async () => {
    const key = h.createKey('streamer', 1);
    const words = Array.from({ length: 12 }, (_, i) => `s${i} `);
    h.double.queue.push({ kind: 'reply', tokens: words });
    const res = await fetch(`${h.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${key.apiKey}`, 'X-Request-Id': 'shutdown-stream-01' },
      body: JSON.stringify({ model: 'covalid-1.0', stream: true, messages: [{ role: 'user', content: 'go' }] }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    await until(() => (h.double.generations()[1]?.linesSent ?? 0) >= 2, 'the stream to be under way');

    const closing = h.server.close(20_000);
    const body = await res.text();
    await closing;
    const frames = body.split('\n\n').filter((f) => f.startsWith('data: '));
    expect(frames.at(-1)).toBe('data: [DONE]');
    const content = frames
      .slice(0, -1)
      .map((f) => JSON.parse(f.slice(6)) as { choices: Array<{ delta: { content?: string } }> })
      .map((c) => c.choices[0]?.delta.content ?? '')
      .join('');
    expect(content).toBe(words.join(''));
    expect(h.double.generations()[1]?.aborted).toBe(false);

    await closeServices(h.services); // writes what is still waiting, then closes
    const reopened = new Store(h.dbFile);
    try {
      expect(reopened.db.prepare("SELECT status, completion_tokens FROM usage WHERE request_id = 'shutdown-stream-01'").all()).toEqual([
        { status: 200, completion_tokens: words.length },
      ]);
    } finally {
      reopened.close();
    }
  });

  test('past the grace period the rest is cut: Ollama is aborted and the client billed for what it got', async () => {
    h.double.queue.push({ kind: 'hang' });
    const running = chat('forever').catch((err: unknown) => err);
    await h.double.waitForRequests(2, 10_000);
    await h.server.close(300);
    expect(String(await running)).toMatch(/fetch failed/);
    await until(() => h.double.generations()[1]?.aborted === true, 'Ollama to be aborted');
    const row = h.store.db.prepare("SELECT status, error_code FROM usage WHERE status = 499").get();
    expect(row).toEqual({ status: 499, error_code: 'client_closed' });
  });
});
