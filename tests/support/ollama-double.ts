/**
 * A faithful stand-in for Ollama's HTTP API (see ../shared/docs/ollama-protocol.md), for tests and
 * benchmarks. It is strict where the real server is:
 * - NDJSON streams send no status or headers until the first line (after load + prompt evaluation);
 * - zero metrics are omitted, durations are integer nanoseconds, `<>&` are escaped as Go does;
 * - errors before the first line are a real status with `{"error"}` (Ollama 0.12.6 and later; with
 *   `errorLineBeforeFirstToken`, a 200 stream whose only line is the error, as before); after it, an
 *   `{"error"}` line and no `done` line; a stream can also just die or end without `done`;
 * - a non-streamed answer (`stream: false`) comes whole once the whole generation is done; a failure
 *   during it is a 500 `{"error"}` (or a dead connection), and a client that leaves stops it;
 * - writes can be fragmented anywhere (inside a multi-byte character) and lines coalesced;
 * - generations beyond `parallel` wait in line (Ollama queues, no 503); `maxQueue` past that → 503;
 * - a client that disconnects stops the generation, and the double records it as aborted.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface DoubleModel {
  name: string;
  family?: string;
  /** e.g. ['completion'] or ['embedding']; defaults to completion. */
  capabilities?: string[];
}

/** What the double does with the next generation request. */
export type Behaviour =
  | {
      kind: 'reply';
      tokens: string[];
      thinking?: string[];
      toolCalls?: Array<{ name: string; arguments: Record<string, unknown> }>;
      doneReason?: 'stop' | 'length';
      /** Put the last token on the `done:true` line (Ollama sometimes does). */
      lastTokenOnDoneLine?: boolean;
      /** Override the reported counts; `null` omits the field as Ollama does for zero/cached. */
      promptEvalCount?: number | null;
      evalCount?: number | null;
      /** Lines of ~500 bytes after the final line: never Ollama itself, but a broken proxy in front of it. */
      linesAfterDone?: number;
    }
  | { kind: 'error-before'; status: number; message: string }
  | { kind: 'error-mid'; tokens: string[]; message: string; toolCalls?: Array<{ name: string; arguments: Record<string, unknown> }> }
  | { kind: 'die-mid'; tokens: string[] }
  | { kind: 'no-done'; tokens: string[] }
  /** Something that is not Ollama's answer (e.g. a reverse proxy's page), with status 200 unless given. */
  | { kind: 'garbage'; body: string; contentType?: string; status?: number }
  | { kind: 'hang' };

export interface RecordedRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: Record<string, unknown> | undefined;
  /** The client went away before the answer was complete. */
  aborted: boolean;
  completed: boolean;
  /** Lines written before the end or the abort. */
  linesSent: number;
  /** Lines the model produced so far, streamed or not (a non-streamed answer sends them all at the end). */
  generated: number;
}

export interface DoubleOptions {
  models?: DoubleModel[];
  version?: string;
  /** Delay before the first line: model load + prompt evaluation. Headers wait for it too. */
  firstTokenDelayMs?: number;
  /** Delay between lines. */
  tokenDelayMs?: number;
  /**
   * Ollama before 0.12.6: an error before the first token is a 200 stream whose only line is
   * `{"error"}`. Since then it is a real status (500) with that body, like an error before a load.
   */
  errorLineBeforeFirstToken?: boolean;
  /** Split writes at arbitrary bytes and coalesce lines, as TCP may deliver them. */
  fragment?: boolean;
  /**
   * Benchmarks only: each streamed token's text becomes `~t<ns>~`, the CLOCK_MONOTONIC time it was
   * written (process.hrtime, the same clock in every process on the machine), so a client can tell how
   * long each token took to reach it.
   */
  stampTokens?: boolean;
  /** Dimensions of the embeddings /api/embed returns (default 8). */
  embedDims?: number;
  /** Concurrent generations (Ollama's OLLAMA_NUM_PARALLEL); 0 means unbounded. */
  parallel?: number;
  /** Waiting generations beyond which the double answers 503 "server busy" (OLLAMA_MAX_QUEUE). */
  maxQueue?: number;
  /** Keep request records (turn off in long benchmarks). */
  record?: boolean;
  /** Listen on this port (e.g. to bring a host "back" where a closed double was); 0 picks a free one. */
  port?: number;
}

export interface OllamaDouble {
  url: string;
  requests: RecordedRequest[];
  /** GET and HEAD requests by path (`/api/tags`, `/api/version`, …), which `requests` leaves out. */
  gets: Map<string, number>;
  /** Behaviours for the next generation requests, used in order; the default reply once empty. */
  queue: Behaviour[];
  /** Error answers (`{"error"}` with that status) for the next embedding requests, used in order. */
  embedFailures: Array<{ status: number; message: string }>;
  /** Decides a behaviour when `queue` is empty; the default echoes the last user message. */
  behaviour: (body: Record<string, unknown>, path: string) => Behaviour;
  models: DoubleModel[];
  options: DoubleOptions;
  /** Generations currently running (not waiting). */
  readonly active: number;
  /** TCP connections accepted so far: a client that keeps its connections alive opens few. */
  readonly connectionsOpened: number;
  generations(): RecordedRequest[];
  /** Resolves once `n` generation requests have arrived (e.g. to act while one is in flight). */
  waitForRequests(n: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

const DEFAULT_MODELS: DoubleModel[] = [
  { name: 'llama3.2:latest', family: 'llama' },
  { name: 'qwen3:8b', family: 'qwen3' },
  { name: 'nomic-embed-text:latest', family: 'nomic-bert', capabilities: ['embedding'] },
  { name: 'llama-guard3:latest', family: 'llama' },
];

/** Splits text into word-ish tokens, keeping whitespace with the preceding word. */
export function tokenize(text: string): string[] {
  return text.match(/\s*\S+\s*/gu) ?? [];
}

/** Go's json.Marshal escapes these three for HTML safety; clients must cope. */
function goJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c').replace(/>/g, '\\u003e').replace(/&/g, '\\u0026');
}

/** RFC 3339 with nanoseconds and `Z`, like Go's time.Now().UTC(). */
function createdAt(): string {
  const iso = new Date().toISOString(); // ms precision
  return `${iso.slice(0, -1)}${String(process.hrtime()[1] % 1_000_000).padStart(6, '0')}Z`;
}

/** Ollama's names: `:latest` when no tag is given, and any case (it lists them as they were pulled). */
function sameModel(listed: string, asked: string): boolean {
  const a = asked.toLowerCase();
  const tagged = a.slice(a.lastIndexOf('/') + 1).includes(':'); // `localhost:5000/m`: a port, no tag
  return listed.toLowerCase() === (tagged ? a : `${a}:latest`);
}

function lastUserText(body: Record<string, unknown>): string {
  if (typeof body.prompt === 'string') return body.prompt;
  const messages = Array.isArray(body.messages) ? (body.messages as Array<{ role?: string; content?: string }>) : [];
  for (let i = messages.length - 1; i >= 0; i--) if (messages[i]?.role === 'user') return String(messages[i]?.content ?? '');
  return '';
}

function promptTokens(body: Record<string, unknown>): number {
  if (typeof body.prompt === 'string') return tokenize(body.prompt).length + 1;
  const messages = Array.isArray(body.messages) ? (body.messages as Array<{ content?: string }>) : [];
  return messages.reduce((sum, m) => sum + 4 + tokenize(String(m.content ?? '')).length, 0);
}

const defaultBehaviour = (body: Record<string, unknown>): Behaviour => ({ kind: 'reply', tokens: tokenize(`Echo: ${lastUserText(body)}`) });

/** A small deterministic PRNG, so fragmented runs are reproducible. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export async function startOllamaDouble(options: DoubleOptions = {}): Promise<OllamaDouble> {
  const requests: RecordedRequest[] = [];
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  let active = 0;
  const waiting: Array<() => void> = [];
  const random = prng(42);
  const sockets = new Set<Socket>();
  let connectionsOpened = 0;

  const double: OllamaDouble = {
    url: '',
    requests,
    gets: new Map(),
    queue: [],
    embedFailures: [],
    behaviour: defaultBehaviour,
    models: options.models ?? DEFAULT_MODELS,
    options,
    get active() {
      return active;
    },
    get connectionsOpened() {
      return connectionsOpened;
    },
    generations: () => requests.filter((r) => r.path === '/api/chat' || r.path === '/api/generate'),
    waitForRequests: (n, timeoutMs = 5_000) =>
      new Promise<void>((resolve, reject) => {
        if (double.generations().length >= n) return resolve();
        const timer = setTimeout(() => reject(new Error(`only ${double.generations().length} of ${n} requests arrived`)), timeoutMs);
        waiters.push({ n, resolve: () => (clearTimeout(timer), resolve()) });
      }),
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };

  const acquireSlot = async (signal: { aborted: boolean }): Promise<boolean> => {
    const parallel = options.parallel ?? 0;
    if (parallel === 0 || active < parallel) {
      active++;
      return true;
    }
    if (options.maxQueue !== undefined && waiting.length >= options.maxQueue) return false;
    await new Promise<void>((resolve) => waiting.push(resolve));
    if (signal.aborted) {
      releaseSlot(); // pass the slot on to the next one
      return true;
    }
    return true;
  };
  const releaseSlot = () => {
    const next = waiting.shift();
    if (next) next(); // the slot moves to the waiter, `active` unchanged
    else active--;
  };

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://double');
    const record: RecordedRequest = {
      method: req.method ?? 'GET',
      path: url.pathname,
      headers: req.headers,
      body: undefined,
      aborted: false,
      completed: false,
      linesSent: 0,
      generated: 0,
    };
    const raw = await readBody(req);
    res.on('close', () => {
      if (!record.completed) record.aborted = true;
    });
    const sendJson = (status: number, value: unknown) => {
      record.completed = true;
      res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8' }).end(goJson(value));
    };

    if (req.method === 'GET' || req.method === 'HEAD') {
      double.gets.set(url.pathname, (double.gets.get(url.pathname) ?? 0) + 1);
      if (url.pathname === '/') return void res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' }).end('Ollama is running');
      if (url.pathname === '/api/version') return sendJson(200, { version: options.version ?? '0.32.15' });
      if (url.pathname === '/api/tags') return sendJson(200, { models: double.models.map(tagsEntry) });
    }
    const isGeneration = url.pathname === '/api/chat' || url.pathname === '/api/generate';
    if (req.method !== 'POST' || !(isGeneration || url.pathname === '/api/embed')) {
      return void res.writeHead(404, { 'Content-Type': 'text/plain' }).end('404 page not found');
    }

    if (raw.length === 0) return sendJson(400, { error: 'missing request body' });
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(raw) as Record<string, unknown>;
    } catch (err) {
      return sendJson(400, { error: (err as Error).message });
    }
    record.body = body;
    if (options.record !== false) requests.push(record);
    for (const w of waiters.filter((w) => double.generations().length >= w.n)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }

    const model = typeof body.model === 'string' ? body.model : '';
    if (url.pathname === '/api/chat' && model === '') return sendJson(400, { error: 'model is required' });
    const known = double.models.find((m) => sameModel(m.name, model));

    if (url.pathname === '/api/embed') {
      if (!known) return sendJson(404, { error: `model "${model}" not found, try pulling it first` });
      const failure = double.embedFailures.shift();
      if (failure) return sendJson(failure.status, { error: failure.message });
      const input = typeof body.input === 'string' ? [body.input] : body.input;
      if (!Array.isArray(input) || input.some((i) => typeof i !== 'string')) return sendJson(400, { error: 'invalid input type' });
      const texts = input as string[];
      const result: Record<string, unknown> = { model, embeddings: texts.map((t) => embedding(t, options.embedDims)) };
      if (texts.length > 0) {
        result.total_duration = 1_234_567;
        result.prompt_eval_count = texts.reduce((sum, t) => sum + tokenize(t).length, 0) || undefined;
      }
      return sendJson(200, result);
    }

    if (!known) return sendJson(404, { error: `model '${model}' not found` });
    const messages = body.messages;
    if ((url.pathname === '/api/chat' && (!Array.isArray(messages) || messages.length === 0)) || (url.pathname === '/api/generate' && body.prompt === '')) {
      // An empty request only loads the model and answers one JSON object, even when streaming.
      const loaded = url.pathname === '/api/chat' ? { message: { role: 'assistant', content: '' } } : { response: '' };
      return sendJson(200, { model, created_at: createdAt(), ...loaded, done: true, done_reason: 'load' });
    }

    const behaviour = double.queue.shift() ?? double.behaviour(body, url.pathname);
    const gone = { aborted: false };
    res.on('close', () => (gone.aborted = !record.completed));

    if (!(await acquireSlot(gone))) return sendJson(503, { error: 'server busy, please try again.  maximum pending requests exceeded' });
    try {
      await generate(body, url.pathname, model, behaviour, res, record, gone);
    } finally {
      releaseSlot();
    }
  });

  const tagsEntry = (m: DoubleModel) => ({
    name: m.name,
    model: m.name,
    modified_at: '2026-10-01T12:00:00.123456789Z',
    size: 2_019_393_189,
    digest: 'a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72',
    details: { parent_model: '', format: 'gguf', family: m.family ?? 'llama', families: [m.family ?? 'llama'], parameter_size: '3.2B', quantization_level: 'Q4_K_M' },
    capabilities: m.capabilities ?? ['completion'],
  });

  async function generate(
    body: Record<string, unknown>,
    path: string,
    model: string,
    behaviour: Behaviour,
    res: http.ServerResponse,
    record: RecordedRequest,
    gone: { aborted: boolean },
  ): Promise<void> {
    const started = process.hrtime.bigint();
    const streaming = body.stream !== false;
    if (options.firstTokenDelayMs) await sleep(options.firstTokenDelayMs);
    if (gone.aborted) return;

    if (behaviour.kind === 'hang') return; // until the client gives up
    if (behaviour.kind === 'error-before') {
      record.completed = true;
      return void res.writeHead(behaviour.status, { 'Content-Type': 'application/json; charset=utf-8' }).end(goJson({ error: behaviour.message }));
    }
    if (behaviour.kind === 'garbage') {
      record.completed = true;
      return void res.writeHead(behaviour.status ?? 200, { 'Content-Type': behaviour.contentType ?? 'text/html' }).end(behaviour.body);
    }

    const isChat = path === '/api/chat';
    const line = (content: string, extra: Record<string, unknown> = {}, thinking?: string) => {
      const base: Record<string, unknown> = { model, created_at: createdAt() };
      if (isChat) {
        const message: Record<string, unknown> = { role: 'assistant', content };
        if (thinking) message.thinking = thinking;
        if (extra.tool_calls) {
          message.tool_calls = extra.tool_calls;
          delete extra.tool_calls;
        }
        base.message = message;
      } else {
        base.response = content;
        if (thinking) base.thinking = thinking;
      }
      return { ...base, done: false, ...extra };
    };

    const tokens = behaviour.tokens;
    const numPredict = (body.options as Record<string, unknown> | undefined)?.num_predict;
    const limit = typeof numPredict === 'number' && numPredict >= 0 ? numPredict : Infinity;
    const emitted = behaviour.kind === 'reply' ? tokens.slice(0, limit) : tokens;
    const lines: Array<Record<string, unknown>> = [];
    if (behaviour.kind === 'reply') for (const t of behaviour.thinking ?? []) lines.push(line('', {}, t));
    const contentLines = emitted.map((t) => line(t));
    if (behaviour.kind === 'reply' && behaviour.lastTokenOnDoneLine && contentLines.length > 0) contentLines.pop();
    for (const l of contentLines) lines.push(l); // not a spread: a long answer would overflow the call stack
    if ((behaviour.kind === 'reply' || behaviour.kind === 'error-mid') && behaviour.toolCalls?.length) {
      lines.push(
        line('', {
          tool_calls: behaviour.toolCalls.map((c, index) => ({ id: `call_${index}${Math.random().toString(36).slice(2, 10)}`, function: { index, name: c.name, arguments: c.arguments } })),
        }),
      );
    }

    if (!streaming) {
      // Ollama generates the whole answer before it sends anything (status and headers included); a
      // client that leaves meanwhile stops the generation.
      for (let i = 0; i < lines.length; i++) {
        if (gone.aborted) return;
        record.generated++;
        if (options.tokenDelayMs) await sleep(options.tokenDelayMs);
      }
      if (gone.aborted) return;
      switch (behaviour.kind) {
        case 'reply':
          return sendNow(res, record, 200, wholeAnswer(behaviour, emitted, body, started, isChat, model, lines));
        case 'error-mid':
          return sendNow(res, record, 500, { error: behaviour.message });
        case 'no-done':
          return sendNow(res, record, 500, { error: 'model runner has unexpectedly stopped, this may be due to resource limitations or an internal error, check ollama server logs for details' });
        case 'die-mid':
          record.completed = true;
          res.socket?.destroy();
          return;
      }
    }

    const writer = lineWriter(res, record, gone);
    for (const l of lines) {
      if (gone.aborted) return;
      record.generated++;
      if (options.stampTokens) stamp(l);
      await writer.write(l);
      if (options.tokenDelayMs) await sleep(options.tokenDelayMs);
    }
    if (gone.aborted) return;
    switch (behaviour.kind) {
      case 'reply': {
        const final = finalLine(behaviour, emitted, body, started, isChat, model);
        if (behaviour.lastTokenOnDoneLine && emitted.length > 0) {
          const last = emitted[emitted.length - 1] as string;
          if (isChat) (final.message as Record<string, unknown>).content = last;
          else final.response = last;
        }
        await writer.write(final);
        for (let i = 0; i < (behaviour.linesAfterDone ?? 0); i++) await writer.write(line('x'.repeat(500)));
        record.completed = true;
        return void (await writer.end());
      }
      case 'error-mid':
        // Nothing written yet: since Ollama 0.12.6 the error is the status and body of the answer.
        if (record.linesSent === 0 && !options.errorLineBeforeFirstToken) return sendNow(res, record, 500, { error: behaviour.message });
        await writer.write({ error: behaviour.message });
        record.completed = true;
        return void (await writer.end());
      case 'no-done':
        record.completed = true;
        return void (await writer.end());
      case 'die-mid':
        record.completed = true;
        res.socket?.destroy();
        return;
    }
  }

  /** A non-streamed answer: the final line carrying everything the streamed lines would have. */
  function wholeAnswer(
    behaviour: Extract<Behaviour, { kind: 'reply' }>,
    emitted: string[],
    body: Record<string, unknown>,
    started: bigint,
    isChat: boolean,
    model: string,
    lines: Array<Record<string, unknown>>,
  ): Record<string, unknown> {
    const final = finalLine(behaviour, emitted, body, started, isChat, model);
    const text = emitted.join('');
    const thinking = (behaviour.thinking ?? []).join('');
    const toolCalls = lines.flatMap((l) => ((l.message as { tool_calls?: unknown[] } | undefined)?.tool_calls ?? []));
    if (isChat) {
      const message = final.message as Record<string, unknown>;
      message.content = text;
      if (thinking) message.thinking = thinking;
      if (toolCalls.length) message.tool_calls = toolCalls;
    } else {
      final.response = text;
      if (thinking) final.thinking = thinking;
    }
    return final;
  }

  function sendNow(res: http.ServerResponse, record: RecordedRequest, status: number, value: unknown): void {
    record.completed = true;
    res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8' }).end(goJson(value));
  }

  function finalLine(
    behaviour: Extract<Behaviour, { kind: 'reply' }>,
    emitted: string[],
    body: Record<string, unknown>,
    started: bigint,
    isChat: boolean,
    model: string,
  ): Record<string, unknown> {
    const total = Number(process.hrtime.bigint() - started) || 1;
    const promptCount = behaviour.promptEvalCount === undefined ? promptTokens(body) : behaviour.promptEvalCount;
    const evalCount = behaviour.evalCount === undefined ? emitted.length : behaviour.evalCount;
    const truncated = emitted.length < behaviour.tokens.length;
    const final: Record<string, unknown> = {
      model,
      created_at: createdAt(),
      ...(isChat ? { message: { role: 'assistant', content: '' } } : { response: '' }),
      done: true,
      done_reason: truncated ? 'length' : (behaviour.doneReason ?? 'stop'),
      total_duration: total,
      load_duration: Math.round(total / 10) || undefined,
    };
    // omitempty: zero or absent counts are not sent at all.
    if (promptCount) Object.assign(final, { prompt_eval_count: promptCount, prompt_eval_duration: Math.round(total / 3) || 1 });
    if (evalCount) Object.assign(final, { eval_count: evalCount, eval_duration: Math.round(total / 2) || 1 });
    // /api/generate's final line carries the conversation's token ids (prompt and answer): ~7 bytes a
    // token, so a long conversation makes it the longest line Ollama sends (hundreds of KB at 100 K).
    if (!isChat) final.context = Array.from({ length: promptTokens(body) + emitted.length }, (_, i) => 100 + ((i * 7919) % 128_000));
    return final;
  }

  /** Writes NDJSON lines; headers go out with the first one. With `fragment`, bytes are split and coalesced. */
  function lineWriter(res: http.ServerResponse, record: RecordedRequest, gone: { aborted: boolean }) {
    let started = false;
    let pending = Buffer.alloc(0);
    const start = () => {
      if (started) return;
      started = true;
      res.setHeader('Content-Type', 'application/x-ndjson');
      res.statusCode = 200;
    };
    const flush = async (data: Buffer) => {
      if (!options.fragment) {
        // Ollama's writes block while the client is not reading (Go's ResponseWriter): its
        // generation waits too, rather than piling the answer up in memory.
        if (!res.write(data) && !res.destroyed) await writable(res);
        return;
      }
      // Cut at random byte offsets (possibly inside a multi-byte character), with pauses so the
      // pieces arrive in separate reads.
      let offset = 0;
      while (offset < data.length && !gone.aborted) {
        const size = 1 + Math.floor(random() * Math.min(7, data.length - offset));
        res.write(data.subarray(offset, offset + size));
        offset += size;
        await sleep(1);
      }
    };
    return {
      write: async (value: Record<string, unknown>) => {
        start();
        record.linesSent++;
        const bytes = Buffer.from(`${goJson(value)}\n`, 'utf8');
        if (options.fragment && random() < 0.3) {
          pending = Buffer.concat([pending, bytes]); // coalesce with the next line
          return;
        }
        const data = Buffer.concat([pending, bytes]);
        pending = Buffer.alloc(0);
        await flush(data);
      },
      end: async () => {
        start();
        if (pending.length) await flush(pending);
        res.end();
      },
    };
  }

  // Ollama's server is Go's `http.Server{}` with no timeouts set (ollama-protocol.md §2, "No server
  // read/write timeouts"): an idle keep-alive connection stays open until its client closes it. Node's
  // server would close one after 5 s idle, making a client that keeps its connections reconnect.
  server.keepAliveTimeout = 0;
  server.requestTimeout = 0;
  server.on('connection', (socket) => {
    socket.setNoDelay(true);
    connectionsOpened++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', () => resolve()));
  double.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return double;
}

/** Replaces a token line's text with the time it is written (see `stampTokens`). */
function stamp(line: Record<string, unknown>): void {
  const message = line.message as { content?: string } | undefined;
  const text = `~t${process.hrtime.bigint()}~`;
  if (message?.content) message.content = text;
  else if (typeof line.response === 'string' && line.response) line.response = text;
}

/** Resolves when `res` can take more (drained) or never will (closed). */
function writable(res: http.ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** A deterministic, L2-normalised vector for a text (8 dimensions unless asked: real models have 384–4,096). */
export function embedding(text: string, dims = 8): number[] {
  // The text hashed once (FNV-1a), then one mixing step per dimension: cheap at 4,096 dimensions.
  let state = 2166136261;
  for (const ch of text) state = Math.imul(state ^ (ch.codePointAt(0) as number), 16777619);
  const v = new Array<number>(dims);
  for (let i = 0; i < dims; i++) {
    state = Math.imul(state ^ (state >>> 15), 2246822507) + 0x9e3779b9;
    state = (state ^ (state >>> 13)) >>> 0;
    v[i] = (state / 2 ** 32) * 2 - 1;
  }
  let sum = 0;
  for (const x of v) sum += x * x;
  const norm = Math.sqrt(sum) || 1;
  return v.map((x) => x / norm);
}
