/**
 * The floor of the stack: the least a server on this stack can do for a chat request — read the JSON
 * body, call Ollama (the double) through undici for the whole answer, reply with JSON — with no auth,
 * limits, credits, usage rows, logs or metrics. `bench/floor.ts` measures it beside the yardstick.
 *
 * `node dist/bench/floor-server.js <http|proto|express|express-born> <upstream-url>`; prints its URL.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { Agent } from 'undici';
import { createExpressServer } from '../server/express-server';

const kind = process.argv[2];
const upstream = new URL(process.argv[3] ?? 'http://127.0.0.1:11434');
const agent = new Agent({ keepAliveTimeout: 30_000 });

/** One chat turn through Ollama, answered in a minimal OpenAI shape. */
async function answer(body: unknown): Promise<string> {
  const { model, messages } = body as { model: string; messages: unknown[] };
  const response = await agent.request({
    origin: upstream.origin,
    path: '/api/chat',
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages, stream: false }),
  });
  const ollama = (await response.body.json()) as { message: { content: string }; prompt_eval_count?: number; eval_count?: number };
  return JSON.stringify({
    object: 'chat.completion',
    model,
    choices: [{ index: 0, message: { role: 'assistant', content: ollama.message.content }, finish_reason: 'stop' }],
    usage: { prompt_tokens: ollama.prompt_eval_count ?? 0, completion_tokens: ollama.eval_count ?? 0 },
  });
}

function plainServer(): http.Server {
  return http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      answer(JSON.parse(Buffer.concat(chunks).toString('utf8'))).then(
        (text) => res.writeHead(200, { 'content-type': 'application/json' }).end(text),
        () => res.writeHead(502).end(),
      );
    });
  });
}

function expressServer(): http.Server {
  const app = express();
  // As the gateway sets it up: no ETag (a hash of every body) and no X-Powered-By.
  app.disable('x-powered-by');
  app.set('etag', false);
  app.post('/v1/chat/completions', express.json(), (req, res) => {
    answer(req.body).then(
      (text) => res.type('application/json').send(text),
      () => res.status(502).end(),
    );
  });
  return http.createServer(app);
}

/** The same app, on the server the gateway uses (server/express-server.ts). */
function expressBornServer(): http.Server {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.post('/v1/chat/completions', express.json(), (req, res) => {
    answer(req.body).then(
      (text) => res.type('application/json').send(text),
      () => res.status(502).end(),
    );
  });
  return createExpressServer(app);
}

/** Plain node:http, plus the one step of Express that costs most: a new prototype on every request and response. */
function protoServer(): http.Server {
  const reqProto = Object.create(http.IncomingMessage.prototype) as object;
  const resProto = Object.create(http.ServerResponse.prototype) as object;
  const inner = plainServer().listeners('request')[0] as (req: http.IncomingMessage, res: http.ServerResponse) => void;
  return http.createServer((req, res) => {
    Object.setPrototypeOf(req, reqProto);
    Object.setPrototypeOf(res, resProto);
    inner(req, res);
  });
}

const servers: Record<string, () => http.Server> = { http: plainServer, proto: protoServer, express: expressServer, 'express-born': expressBornServer };
const server = (servers[kind ?? ''] ?? plainServer)();
server.keepAliveTimeout = 65_000;
server.listen(0, '127.0.0.1', () => console.log(`http://127.0.0.1:${(server.address() as AddressInfo).port}`));
