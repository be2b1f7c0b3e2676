/**
 * A streaming client that stops reading: the gateway holds Ollama back instead of buffering the
 * answer, and past SSE_STALL_MS it gives the client up — Ollama stopped, the usage billed as far as
 * it was relayed, as for a client that left. A client that leaves a large JSON reply unread has its
 * connection closed after SSE_STALL_MS too.
 */
import type http from 'node:http';
import net from 'node:net';
import { startHarness, type Harness } from './support/harness';
import { until } from './support/until';

describe('a streaming client that stops reading', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ env: { SSE_STALL_MS: '1500' } });
  });
  afterAll(() => h.close());

  test('Ollama is held back, the gateway buffers little, and the stalled client is given up', async () => {
    const key = h.createKey('slow-reader', 100);
    const tokens = Array.from({ length: 300_000 }, (_, i) => ` w${i}`);
    h.double.queue.push({ kind: 'reply', tokens });
    let reply: http.ServerResponse | undefined;
    h.server.server.on('request', (_req, res: http.ServerResponse) => (reply = res));

    const body = JSON.stringify({ model: 'covalid-1.0', messages: [{ role: 'user', content: 'everything' }], stream: true });
    const socket = net.connect({ port: Number(new URL(h.url).port), host: '127.0.0.1' });
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.pause(); // reads nothing, ever
    socket.write(
      `POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer ${key.apiKey}\r\n` +
        `X-Request-Id: slow-reader-0001\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    try {
      await until(() => (h.double.generations()[0]?.linesSent ?? 0) > 0, 'the generation to start');
      await new Promise((resolve) => setTimeout(resolve, 700));
      const generation = h.double.generations()[0];
      // Held back: what the sockets' buffers hold, not the whole answer, and little of it in the gateway.
      expect(generation?.completed).toBe(false);
      expect(generation?.linesSent).toBeLessThan(tokens.length / 2);
      expect(reply?.writableLength ?? 0).toBeLessThan(256 * 1024);

      type Row = { status: number; error_code: string; completion_tokens: number };
      const usageRow = () => h.store.db.prepare('SELECT status, error_code, completion_tokens FROM usage WHERE request_id = ?').get('slow-reader-0001') as Row | undefined;
      await until(() => usageRow() !== undefined, 'the stalled stream to be given up', 5_000);
      const row = usageRow() as Row;
      expect(row).toMatchObject({ status: 499, error_code: 'client_closed' });
      expect(row.completion_tokens).toBeGreaterThan(0);
      await until(() => h.double.generations()[0]?.aborted === true, 'Ollama to be stopped');
      expect(h.double.generations()[0]?.completed).toBe(false);
    } finally {
      socket.destroy();
    }
  });

});

describe('a streaming client that stops reading just as the answer ends', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ env: { SSE_STALL_MS: '1000' } });
  });
  afterAll(() => h.close());

  test('its connection is closed once the unread end has sat there for SSE_STALL_MS', async () => {
    const key = h.createKey('reads-nothing', 100);
    // The last token rides on the done line: the end of the answer and its 4 MB arrive in one batch, so
    // the relay's last write is the one the client does not take.
    h.double.queue.push({ kind: 'reply', tokens: ['Here', ' it', ` ${'x'.repeat(4 * 1024 * 1024)}`], lastTokenOnDoneLine: true });
    let reply: http.ServerResponse | undefined;
    const onRequest = (_req: http.IncomingMessage, res: http.ServerResponse) => (reply = res);
    h.server.server.on('request', onRequest);

    const body = JSON.stringify({ model: 'covalid-1.0', messages: [{ role: 'user', content: 'a lot at the end' }], stream: true });
    const socket = net.connect({ port: Number(new URL(h.url).port), host: '127.0.0.1' });
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.pause(); // reads nothing, ever
    socket.on('error', () => undefined); // the gateway's close may reach it as a reset
    socket.write(
      `POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer ${key.apiKey}\r\n` +
        `X-Request-Id: reads-nothing-0001\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    try {
      await until(() => reply?.writableEnded === true, 'the answer to be relayed to its end', 5_000, () => JSON.stringify({ got: reply !== undefined, ended: reply?.writableEnded, len: reply?.writableLength, gen: h.double.generations()[0] }));
      const res = reply as http.ServerResponse;
      // Ended, but not taken: the backlog is still in the gateway.
      expect(res.writableFinished).toBe(false);
      expect(res.writableLength).toBeGreaterThan(64 * 1024);
      expect(h.double.generations()[0]?.completed).toBe(true);
      const endedAt = Date.now();
      await until(() => res.destroyed, 'the connection to be closed', 5_000);
      expect(Date.now() - endedAt).toBeGreaterThanOrEqual(900);
      // Billed as a whole answer: it was relayed to its end.
      type Row = { status: number; completion_tokens: number };
      const row = h.store.db.prepare('SELECT status, completion_tokens FROM usage WHERE request_id = ?').get('reads-nothing-0001') as Row | undefined;
      expect(row).toMatchObject({ status: 200, completion_tokens: 3 });
    } finally {
      h.server.server.off('request', onRequest);
      socket.destroy();
    }
  });
});

describe('a client that never reads a large JSON reply', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ env: { SSE_STALL_MS: '1000' } });
    h.store.setModel({ name: 'embed-small', ollamaModel: 'nomic-embed-text', category: 'embedding' });
  });
  afterAll(() => h.close());

  /** Sends `body` to `path` on a socket that reads nothing; returns the gateway's reply object and the socket. */
  async function sendUnread(path: string, apiKey: string, requestId: string, body: string) {
    let reply: http.ServerResponse | undefined;
    const onRequest = (_req: http.IncomingMessage, res: http.ServerResponse) => (reply = res);
    h.server.server.on('request', onRequest);
    const socket = net.connect({ port: Number(new URL(h.url).port), host: '127.0.0.1' });
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.pause(); // reads nothing, ever
    socket.on('error', () => undefined);
    socket.write(
      `POST ${path} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer ${apiKey}\r\n` +
        `X-Request-Id: ${requestId}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    await until(() => reply !== undefined, 'the request to arrive', 5_000);
    h.server.server.off('request', onRequest);
    return { res: reply as http.ServerResponse, socket };
  }

  test('a non-streamed answer larger than the socket buffers: the connection is closed after SSE_STALL_MS', async () => {
    const key = h.createKey('json-unread', 100);
    h.double.queue.push({ kind: 'reply', tokens: ['Here', ` ${'x'.repeat(4 * 1024 * 1024)}`] });
    const body = JSON.stringify({ model: 'covalid-1.0', messages: [{ role: 'user', content: 'a lot' }] });
    const { res, socket } = await sendUnread('/v1/chat/completions', key.apiKey, 'json-unread-0001', body);
    try {
      // Written a slice at a time: the socket's buffers fill, then the writer waits for the client.
      await until(() => res.headersSent && res.writableNeedDrain, 'the buffers to fill', 5_000);
      const stuckAt = Date.now();
      await until(() => res.destroyed, 'the connection to be closed', 5_000);
      expect(Date.now() - stuckAt).toBeGreaterThanOrEqual(900);
      expect(res.writableEnded).toBe(false); // given up before the end
    } finally {
      socket.destroy();
    }
  });

  test('embeddings written in pieces: the writer gives up at a full backlog instead of waiting for ever', async () => {
    const key = h.createKey('embed-unread', 100);
    h.double.options.embedDims = 4096;
    const input = Array.from({ length: 200 }, (_, i) => `passage ${i}`); // ~15 MB of JSON, in pieces
    const { res, socket } = await sendUnread('/v1/embeddings', key.apiKey, 'embed-unread-0001', JSON.stringify({ model: 'embed-small', input, encoding_format: 'float' }));
    try {
      await until(() => res.headersSent && res.writableNeedDrain, 'the pieces to fill the socket', 10_000);
      const stalledAt = Date.now();
      await until(() => res.destroyed, 'the connection to be closed', 5_000);
      expect(Date.now() - stalledAt).toBeGreaterThanOrEqual(800);
      expect(res.writableEnded).toBe(false); // given up before the last piece
    } finally {
      h.double.options.embedDims = undefined;
      socket.destroy();
    }
  });
});

describe('a client that reads a large JSON reply slowly but steadily', () => {
  // Each reader must free a third of a (megabytes large) socket send buffer within SSE_STALL_MS: Linux
  // wakes a blocked writer only then. The embeddings reply is twice as large: a longer stall time.
  let h: Harness;
  let slow: Harness;
  beforeAll(async () => {
    h = await startHarness({ env: { SSE_STALL_MS: '1000' } });
    slow = await startHarness({ env: { SSE_STALL_MS: '3000' } });
    slow.store.setModel({ name: 'embed-small', ollamaModel: 'nomic-embed-text', category: 'embedding' });
  });
  afterAll(() => Promise.all([h.close(), slow.close()]));

  /**
   * Sends the request on a socket read `bytesPerTick` every 50 ms (steady, much slower than loopback)
   * and returns what arrived once the gateway closed the connection (`Connection: close`).
   */
  async function readSlowly(g: Harness, path: string, apiKey: string, body: string, bytesPerTick: number): Promise<Buffer> {
    const socket = net.connect({ port: Number(new URL(g.url).port), host: '127.0.0.1' });
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.on('error', () => undefined);
    socket.pause();
    socket.write(
      `POST ${path} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer ${apiKey}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
    const chunks: Buffer[] = [];
    let closed = false;
    socket.on('close', () => (closed = true));
    const reader = setInterval(() => {
      let got = 0;
      let chunk: Buffer | null;
      while (got < bytesPerTick && (chunk = socket.read() as Buffer | null) !== null) {
        got += chunk.length;
        chunks.push(chunk);
      }
    }, 50);
    try {
      await until(() => closed, 'the reply to end', 30_000);
      let chunk: Buffer | null;
      while ((chunk = socket.read() as Buffer | null) !== null) chunks.push(chunk);
      return Buffer.concat(chunks);
    } finally {
      clearInterval(reader);
      socket.destroy();
    }
  }

  test('a 4 MB non-streamed answer read at ~2.5 MB/s arrives whole, though that takes longer than SSE_STALL_MS', async () => {
    const key = h.createKey('steady-json', 100);
    const big = 'x'.repeat(4 * 1024 * 1024);
    h.double.queue.push({ kind: 'reply', tokens: ['Here', ` ${big}`] });
    const raw = await readSlowly(h, '/v1/chat/completions', key.apiKey, JSON.stringify({ model: 'covalid-1.0', messages: [{ role: 'user', content: 'a lot' }] }), 128 * 1024);
    const text = raw.toString('utf8');
    const head = text.slice(0, text.indexOf('\r\n\r\n'));
    const payload = text.slice(head.length + 4);
    expect(head).toMatch(/^HTTP\/1\.1 200/);
    expect(Number(/content-length: (\d+)/i.exec(head)?.[1])).toBe(Buffer.byteLength(payload));
    expect(JSON.parse(payload).choices[0].message.content).toBe(`Here ${big}`);
  }, 40_000);

  test('piecewise embeddings (96 × 4,096, ~8 MB) read at ~2.5 MB/s arrive whole', async () => {
    const key = slow.createKey('steady-embed', 100);
    slow.double.options.embedDims = 4096;
    try {
      const input = Array.from({ length: 96 }, (_, i) => `passage ${i}`);
      const raw = await readSlowly(slow, '/v1/embeddings', key.apiKey, JSON.stringify({ model: 'embed-small', input, encoding_format: 'float' }), 128 * 1024);
      const text = raw.toString('utf8');
      expect(text).toMatch(/^HTTP\/1\.1 200/);
      expect(text).toMatch(/"total_tokens":\d+\}\}\r\n0\r\n\r\n$/); // the last chunk and the end of the chunked body
    } finally {
      slow.double.options.embedDims = undefined;
    }
  }, 40_000);
});
