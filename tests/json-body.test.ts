/**
 * The request body reader every dialect uses, on a real socket: limits by Content-Length and by bytes
 * read, compressed bodies (and their inflated size), and what is refused as not JSON.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import zlib from 'node:zlib';
import { GatewayError } from '../lib/errors';
import { bytesOf, readJsonBody } from '../server/json-body';

const LIMIT = 1024;
let server: http.Server;
let url: string;

beforeAll(async () => {
  // Answers what the reader made of the body: the value, or the error's code and message.
  server = http.createServer((req, res) => {
    readJsonBody(req, LIMIT).then(
      (body) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ body })),
      (err: unknown) => {
        const e = err as GatewayError;
        res.writeHead(e.status, { 'content-type': 'application/json' }).end(JSON.stringify({ code: e.code, message: e.message }));
      },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

async function send(body: string | Buffer | ReadableStream<Uint8Array>, headers: Record<string, string> = {}) {
  const init: RequestInit & { duplex?: 'half' } = { method: 'POST', headers, body };
  if (body instanceof ReadableStream) init.duplex = 'half';
  const res = await fetch(url, init);
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

test('sizes in the configuration syntax', () => {
  expect([bytesOf('1mb'), bytesOf('512kb'), bytesOf('800B')]).toEqual([1_048_576, 524_288, 800]);
  expect(() => bytesOf('lots')).toThrow('not a size');
});

test('JSON objects and arrays whatever the Content-Type; an empty body reads as {}', async () => {
  expect(await send('{"a":[1,"né"]}', { 'content-type': 'text/plain' })).toEqual({ status: 200, json: { body: { a: [1, 'né'] } } });
  expect(await send(' [1,2] ')).toEqual({ status: 200, json: { body: [1, 2] } });
  expect(await send('')).toEqual({ status: 200, json: { body: {} } });
});

test('the charset of the Content-Type decides the decoding; one it cannot decode is refused, not guessed', async () => {
  const text = '{"t":"né 🦙"}';
  const ok = { status: 200, json: { body: { t: 'né 🦙' } } };
  expect(await send(Buffer.from(text, 'utf16le'), { 'content-type': 'application/json; charset=UTF-16LE' })).toEqual(ok);
  expect(await send(Buffer.from(text, 'utf16le').swap16(), { 'content-type': 'application/json; charset=utf-16be' })).toEqual(ok);
  expect(await send(Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]), { 'content-type': 'application/json; charset=utf-16' })).toEqual({
    status: 200,
    json: { body: { t: 'né 🦙' } },
  });
  expect(await send(text, { 'content-type': 'application/json; charset="utf-8"' })).toEqual(ok);
  // Java clients' default: Latin-1, decoded as Latin-1 (not as UTF-8, which would garble "é").
  expect(await send(Buffer.from('{"t":"né"}', 'latin1'), { 'content-type': 'text/plain; charset=ISO-8859-1' })).toEqual({ status: 200, json: { body: { t: 'né' } } });
  expect(await send('{"t":"plain"}', { 'content-type': 'application/json; charset=us-ascii' })).toEqual({ status: 200, json: { body: { t: 'plain' } } });
  expect(await send('{"t":"x"}', { 'content-type': 'application/json; charset=koi8-r' })).toEqual({
    status: 400,
    json: { code: 'invalid_request', message: 'Unsupported charset "koi8-r": send the body as UTF-8.' },
  });
});

test('broken JSON, bare values and a body of only whitespace are 400 "not valid JSON"', async () => {
  for (const text of ['{"a":', '"just a string"', '42', 'null', '  \n ']) {
    expect(await send(text)).toEqual({ status: 400, json: { code: 'invalid_request', message: 'The request body is not valid JSON.' } });
  }
});

test('over the limit: refused by Content-Length, and by bytes read when no length is sent', async () => {
  const big = JSON.stringify({ x: 'y'.repeat(LIMIT) });
  expect(await send(big)).toMatchObject({ status: 413, json: { code: 'payload_too_large' } });
  const chunked = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new TextEncoder().encode(big.slice(0, 600)));
      controller.enqueue(new TextEncoder().encode(big.slice(600)));
      controller.close();
    },
  });
  expect(await send(chunked)).toMatchObject({ status: 413, json: { code: 'payload_too_large', message: `The request body is larger than the limit of ${LIMIT} bytes.` } });
});

test('gzip, deflate and br bodies are inflated, and held to the limit once inflated', async () => {
  const text = '{"prompt":"compressed"}';
  for (const [encoding, bytes] of [
    ['gzip', zlib.gzipSync(text)],
    ['deflate', zlib.deflateSync(text)],
    ['br', zlib.brotliCompressSync(text)],
  ] as const) {
    expect(await send(bytes, { 'content-encoding': encoding })).toEqual({ status: 200, json: { body: { prompt: 'compressed' } } });
  }
  // Small on the wire, far over the limit inflated (a zip bomb in miniature).
  const bomb = zlib.gzipSync(JSON.stringify({ x: ' '.repeat(100_000) }));
  expect(bomb.length).toBeLessThan(LIMIT);
  expect(await send(bomb, { 'content-encoding': 'gzip' })).toMatchObject({ status: 413, json: { code: 'payload_too_large' } });
  expect(await send('not gzip', { 'content-encoding': 'gzip' })).toEqual({ status: 400, json: { code: 'invalid_request', message: 'The request body is not valid gzip data.' } });
  expect(await send('{}', { 'content-encoding': 'zstd' })).toMatchObject({ status: 400, json: { message: expect.stringMatching(/Unsupported Content-Encoding "zstd"/) } });
});

test('a request whose client left before the body was read (it waited for a turn) is refused, not left hanging', async () => {
  let settle: (outcome: string) => void = () => undefined;
  const outcome = new Promise<string>((resolve) => (settle = resolve));
  const late = http.createServer((req) => {
    // Read only once the client is gone, as a request held back by the turn budget is.
    req.socket.once('close', () =>
      setImmediate(() => {
        readJsonBody(req, LIMIT).then(
          () => settle('read'),
          (err: unknown) => settle((err as GatewayError).message),
        );
        setTimeout(() => settle('still waiting after 1 s'), 1_000).unref();
      }),
    );
  });
  await new Promise<void>((resolve) => late.listen(0, '127.0.0.1', resolve));
  const { port } = late.address() as AddressInfo;
  const client = http.request({ port, host: '127.0.0.1', method: 'POST', headers: { 'content-type': 'application/json' } });
  client.on('error', () => undefined);
  client.end('{"a":1}');
  setTimeout(() => client.destroy(), 50);
  try {
    expect(await outcome).toBe('The request body was cut off.');
  } finally {
    late.closeAllConnections();
    await new Promise<void>((resolve) => late.close(() => resolve()));
  }
});
