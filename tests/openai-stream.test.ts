/**
 * `POST /v1/chat/completions` with `stream: true`: the exact SSE frames on the wire, the SDK's view of
 * them, failures before and after the headers, multibyte text split across reads, and a client that
 * leaves mid-stream (Ollama aborted, the partial output billed).
 */
import OpenAI from 'openai';
import { startHarness, postJson, type Harness } from './support/harness';
import { tokenize } from './support/ollama-double';
import { until } from './support/until';

/** The raw `data:` payloads of an SSE body, in order (comments dropped). */
function frames(text: string): string[] {
  return text
    .split('\n\n')
    .filter((event) => event !== '' && !event.startsWith(':'))
    .map((event) => {
      expect(event.startsWith('data: ')).toBe(true);
      return event.slice('data: '.length);
    });
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- chunks are checked field by field
type Chunk = Record<string, any>;

describe('POST /v1/chat/completions (streaming)', () => {
  let h: Harness;
  let key: ReturnType<Harness['createKey']>;
  let client: OpenAI;
  const url = () => `${h.url}/v1/chat/completions`;
  const bearer = () => ({ Authorization: `Bearer ${key.apiKey}` });

  beforeAll(async () => {
    h = await startHarness({ double: { fragment: true } });
    key = h.createKey('stream-app');
    client = new OpenAI({ apiKey: key.apiKey, baseURL: `${h.url}/v1`, maxRetries: 0 });
  });
  afterAll(() => h.close());
  beforeEach(() => {
    h.double.requests.length = 0;
    h.double.queue.length = 0;
  });

  test('wire: SSE headers, role chunk, content chunks, finish chunk, usage chunk, [DONE]', async () => {
    h.double.queue.push({ kind: 'reply', tokens: ['Bon', 'jour', ' ça va ', '😀', ' é'] });
    const res = await fetch(url(), {
      method: 'POST',
      headers: { ...bearer(), 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'covalid-1.0', messages: [{ role: 'user', content: 'Say hi' }], stream: true, stream_options: { include_usage: true } }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    expect(res.headers.get('cache-control')).toBe('no-cache, no-transform');
    expect(res.headers.get('x-accel-buffering')).toBe('no');
    expect(res.headers.get('x-request-id')).toMatch(/^req_/);
    const text = await res.text();
    expect(text).not.toMatch(/^event:/m);
    const data = frames(text);
    expect(data[data.length - 1]).toBe('[DONE]');
    const chunks = data.slice(0, -1).map((d) => JSON.parse(d) as Chunk);

    const first = chunks[0] as Chunk;
    expect(first).toMatchObject({ object: 'chat.completion.chunk', model: 'covalid-1.0', usage: null, organization_id: key.org.id });
    expect(first.id).toMatch(/^chatcmpl-/);
    expect(first.choices).toEqual([{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]);
    for (const c of chunks) {
      expect(c.id).toBe(first.id);
      expect(c.created).toBe(first.created);
    }

    const content = chunks.slice(1, -2).map((c) => {
      expect(c.usage).toBeNull();
      expect(c.choices[0].finish_reason).toBeNull();
      return c.choices[0].delta.content as string;
    });
    expect(content.join('')).toBe('Bonjour ça va 😀 é');

    const finish = chunks[chunks.length - 2] as Chunk;
    expect(finish.choices).toEqual([{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }]);
    expect(finish.usage).toBeNull();
    const usage = chunks[chunks.length - 1] as Chunk;
    expect(usage.choices).toEqual([]);
    const prompt = 4 + tokenize('Say hi').length;
    expect(usage.usage).toEqual({ prompt_tokens: prompt, completion_tokens: 5, total_tokens: prompt + 5 });
  });

  test('without include_usage: no usage key and no usage chunk', async () => {
    const res = await postJson(url(), { model: 'covalid-1.0', messages: [{ role: 'user', content: 'x' }], stream: true }, bearer());
    const chunks = frames(res.text).slice(0, -1).map((d) => JSON.parse(d) as Chunk);
    expect(chunks.every((c) => !('usage' in c))).toBe(true);
    expect(chunks[chunks.length - 1]?.choices[0].finish_reason).toBe('stop');
  });

  test('complete answers leave the connection to Ollama open for the next request', async () => {
    const ask = (stream: boolean) => postJson(url(), { model: 'covalid-1.0', messages: [{ role: 'user', content: 'again' }], stream }, bearer());
    expect((await ask(true)).status).toBe(200); // warm: the pool holds a connection now
    const opened = h.double.connectionsOpened;
    for (const stream of [true, false, true, false]) {
      const res = await ask(stream);
      expect(res.status).toBe(200);
      expect(stream ? res.text.endsWith('data: [DONE]\n\n') : JSON.parse(res.text).choices[0].finish_reason === 'stop').toBe(true);
      // The reply goes out at Ollama's final line; the end of its body (sent in pieces here) follows.
      // Only once that is read is the connection free again, else the next request takes another.
      await until(() => h.double.generations().at(-1)?.completed === true, 'the double to finish its answer');
      await new Promise((resolve) => setTimeout(resolve, 30));
    }
    expect(h.double.connectionsOpened).toBe(opened);
    expect(h.double.generations().slice(-4).every((g) => g.completed && !g.aborted)).toBe(true);
  });

  test('a connection to Ollama idle for longer than Node servers keep one is still reused', async () => {
    // Ollama keeps idle connections open (no server timeouts); the gateway's pool keeps them 30 s.
    const ask = () => postJson(url(), { model: 'covalid-1.0', messages: [{ role: 'user', content: 'idle' }], stream: true }, bearer());
    expect((await ask()).status).toBe(200);
    await until(() => h.double.generations().at(-1)?.completed === true, 'the double to finish its answer');
    const opened = h.double.connectionsOpened;
    await new Promise((resolve) => setTimeout(resolve, 6_000)); // past Node's 5 s keep-alive default
    const res = await ask();
    expect(res.status).toBe(200);
    expect(res.text.endsWith('data: [DONE]\n\n')).toBe(true);
    expect(h.double.connectionsOpened).toBe(opened);
  }, 15_000);

  test('the headers do not wait for the first line with text', async () => {
    h.double.queue.push({ kind: 'reply', tokens: ['', 'late'] });
    h.double.options.tokenDelayMs = 800;
    h.double.options.fragment = false; // this harness's double may hold a line back to send it with the next
    try {
      const started = Date.now();
      const res = await fetch(url(), {
        method: 'POST',
        headers: { ...bearer(), 'Content-Type': 'application/json' },
        body: JSON.stringify({ model: 'covalid-1.0', messages: [{ role: 'user', content: 'x' }], stream: true }),
      });
      expect(res.status).toBe(200);
      expect(Date.now() - started).toBeLessThan(600); // Ollama's first line came at once, its second 800 ms later
      const data = frames(await res.text());
      expect(data.at(-1)).toBe('[DONE]');
      expect(data.map((d) => (d === '[DONE]' ? '' : ((JSON.parse(d) as Chunk).choices[0]?.delta?.content ?? ''))).join('')).toBe('late');
    } finally {
      h.double.options.tokenDelayMs = 0;
      h.double.options.fragment = true;
    }
  });

  test('the SDK streams the same text (multibyte split across reads) and reads the usage', async () => {
    h.double.queue.push({ kind: 'reply', tokens: ['日本', '語の', 'テキスト', ' 🎉🎉', ' déjà'] });
    const stream = await client.chat.completions.create({
      model: 'covalid-1.0',
      messages: [{ role: 'user', content: 'x' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: OpenAI.CompletionUsage | null | undefined;
    const finishes: Array<string | null> = [];
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      if (chunk.choices[0]) finishes.push(chunk.choices[0].finish_reason);
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe('日本語のテキスト 🎉🎉 déjà');
    expect(finishes[finishes.length - 1]).toBe('stop');
    expect(usage?.completion_tokens).toBe(5);
  });

  test('the SDK stream helper accepts the chunks (role, finish_reason present)', async () => {
    const runner = client.chat.completions.stream({ model: 'covalid-1.0', messages: [{ role: 'user', content: 'hello helper' }] });
    const final = await runner.finalChatCompletion();
    expect(final.choices[0]?.message.content).toBe('Echo: hello helper');
    expect(final.choices[0]?.finish_reason).toBe('stop');
  });

  test('tool calls stream with index, id, type, name and string arguments; finish_reason tool_calls', async () => {
    h.double.queue.push({ kind: 'reply', tokens: [], toolCalls: [{ name: 'a', arguments: { x: 1 } }, { name: 'b', arguments: {} }] });
    const res = await postJson(url(), { model: 'covalid-1.0', messages: [{ role: 'user', content: 'x' }], stream: true, tools: [{ type: 'function', function: { name: 'a' } }] }, bearer());
    const chunks = frames(res.text).slice(0, -1).map((d) => JSON.parse(d) as Chunk);
    const calls = chunks.flatMap((c) => c.choices[0]?.delta.tool_calls ?? []);
    expect(calls).toEqual([
      { index: 0, id: expect.stringMatching(/^call_/), type: 'function', function: { name: 'a', arguments: '{"x":1}' } },
      { index: 1, id: expect.stringMatching(/^call_/), type: 'function', function: { name: 'b', arguments: '{}' } },
    ]);
    expect(chunks[chunks.length - 1]?.choices[0].finish_reason).toBe('tool_calls');

    h.double.queue.push({ kind: 'reply', tokens: [], toolCalls: [{ name: 'a', arguments: { x: 1 } }] });
    const final = await client.chat.completions
      .stream({ model: 'covalid-1.0', messages: [{ role: 'user', content: 'x' }], tools: [{ type: 'function', function: { name: 'a' } }] })
      .finalChatCompletion();
    expect(final.choices[0]?.message.tool_calls?.[0]).toMatchObject({ type: 'function', function: { name: 'a', arguments: '{"x":1}' } });
  });

  test('refusals before the headers are real statuses: 401, 404, 400, 503', async () => {
    const body = { model: 'covalid-1.0', messages: [{ role: 'user', content: 'x' }], stream: true };
    expect((await postJson(url(), body)).status).toBe(401);
    const missing = await postJson(url(), { ...body, model: 'nope' }, bearer());
    expect(missing.status).toBe(404);
    expect(missing.body.error.code).toBe('model_not_found');
    expect((await postJson(url(), { ...body, n: 2 }, bearer())).status).toBe(400);
    h.double.queue.push({ kind: 'error-before', status: 503, message: 'server busy, please try again.  maximum pending requests exceeded' });
    const busy = await postJson(url(), body, bearer());
    expect(busy.status).toBe(503);
    expect(busy.headers.get('content-type')).toMatch(/^application\/json/);
    expect(busy.headers.get('retry-after')).toMatch(/^\d+$/);
  });

  test('an empty 200 from Ollama (no line at all) is a real 502 before the headers, not a stream that fails', async () => {
    h.double.queue.push({ kind: 'no-done', tokens: [] });
    const res = await postJson(url(), { model: 'covalid-1.0', messages: [{ role: 'user', content: 'x' }], stream: true }, bearer());
    expect(res.status).toBe(502);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(res.body.error.message).toMatch(/Ollama answered something that is not JSON: an empty body/);
  });

  test('Ollama failing mid-stream: an error event, then [DONE]; the SDK throws APIError', async () => {
    h.double.queue.push({ kind: 'error-mid', tokens: ['Hel', 'lo'], message: 'model runner has unexpectedly stopped' });
    const res = await postJson(url(), { model: 'covalid-1.0', messages: [{ role: 'user', content: 'x' }], stream: true }, bearer());
    expect(res.status).toBe(200);
    const data = frames(res.text);
    expect(data[data.length - 1]).toBe('[DONE]');
    const error = JSON.parse(data[data.length - 2] as string) as Chunk;
    expect(error).toEqual({ error: { message: expect.stringMatching(/model runner has unexpectedly stopped/), type: 'server_error', param: null, code: null } });
    const text = data.slice(0, -2).map((d) => (JSON.parse(d) as Chunk).choices[0].delta.content ?? '').join('');
    expect(text).toBe('Hello');

    h.double.queue.push({ kind: 'error-mid', tokens: ['Hel'], message: 'model runner has unexpectedly stopped' });
    const stream = await client.chat.completions.create({ model: 'covalid-1.0', messages: [{ role: 'user', content: 'x' }], stream: true });
    const err = await (async () => {
      for await (const _ of stream) void _;
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as Error).message).toMatch(/unexpectedly stopped/);
  });

  test.each([
    ['a stream that ends without its final line', { kind: 'no-done' as const, tokens: ['a', 'b'] }],
    ['a connection cut mid-answer', { kind: 'die-mid' as const, tokens: ['a', 'b'] }],
  ])('%s is an error event, never a clean end', async (_name, behaviour) => {
    h.double.queue.push(behaviour);
    const res = await postJson(url(), { model: 'covalid-1.0', messages: [{ role: 'user', content: 'x' }], stream: true }, bearer());
    const data = frames(res.text);
    expect(data[data.length - 1]).toBe('[DONE]');
    expect(JSON.parse(data[data.length - 2] as string)).toEqual({ error: expect.objectContaining({ type: 'server_error', param: null, code: null }) });
  });

  test('a client that leaves mid-stream: Ollama is aborted and the usage row is 499 with the relayed tokens', async () => {
    h.double.options.tokenDelayMs = 30;
    const tokens = Array.from({ length: 200 }, (_, i) => `word${i} `);
    h.double.queue.push({ kind: 'reply', tokens });
    const controller = new AbortController();
    const res = await fetch(url(), {
      method: 'POST',
      headers: { ...bearer(), 'Content-Type': 'application/json', 'X-Request-Id': 'abort-check-0001' },
      body: JSON.stringify({ model: 'covalid-1.0', messages: [{ role: 'user', content: 'long' }], stream: true }),
      signal: controller.signal,
    });
    const reader = res.body!.getReader();
    let received = '';
    const decoder = new TextDecoder();
    while (!/word5 /.test(received)) received += decoder.decode((await reader.read()).value, { stream: true });
    controller.abort();
    try {
      const deadline = Date.now() + 5_000;
      let row: Record<string, unknown> | undefined;
      while (Date.now() < deadline) {
        row = h.store.db.prepare('SELECT status, error_code, completion_tokens FROM usage WHERE request_id = ?').get('abort-check-0001') as typeof row;
        if (row && h.double.generations()[0]?.aborted) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const gen = h.double.generations()[0];
      expect(gen?.aborted).toBe(true);
      expect(gen?.linesSent).toBeLessThan(tokens.length);
      expect(row).toMatchObject({ status: 499, error_code: 'client_closed' });
      // At least what the client saw was billed, and no more than Ollama sent.
      expect(row?.completion_tokens as number).toBeGreaterThanOrEqual(6);
      expect(row?.completion_tokens as number).toBeLessThanOrEqual(3 * (gen?.linesSent ?? 0));
    } finally {
      h.double.options.tokenDelayMs = 0;
    }
  });
});
