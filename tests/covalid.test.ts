/**
 * The Covalid endpoint end to end: real HTTP, SQLite on disk, the Ollama test double.
 */
import fs from 'node:fs';
import { startHarness, postJson, type Harness } from './support/harness';
import { startOllamaDouble, tokenize } from './support/ollama-double';
import { SECURITY_HEADERS } from '../server/security-headers';

describe('POST /api/chat.php', () => {
  let h: Harness;
  let creds: ReturnType<Harness['createKey']>;
  let auth: Record<string, string>;
  const chatUrl = () => `${h.url}/api/chat.php`;

  beforeAll(async () => {
    h = await startHarness();
    creds = h.createKey('covalid-app');
    auth = { 'X-Client-Key': creds.clientKey, 'X-Client-Secret': creds.clientSecret };
  });
  afterAll(() => h.close());
  beforeEach(() => {
    h.double.requests.length = 0;
    h.double.queue.length = 0;
  });

  test('the path matches as Express matches routes: in any case, with a trailing slash', async () => {
    for (const path of ['/API/Chat.PHP', '/api/chat.php/']) {
      const res = await postJson(`${h.url}${path}`, { prompt: 'hi' }, auth);
      expect([path, res.status, res.body.response]).toEqual([path, 200, 'Echo: hi']);
    }
    expect((await fetch(`${h.url}/Health/`)).status).toBe(200);
  });

  test('every reply, refusals included, carries the security headers of a JSON API', async () => {
    const ok = await postJson(chatUrl(), { prompt: 'hi' }, auth);
    const refused = await postJson(chatUrl(), { prompt: 'hi' }, {});
    expect([ok.status, refused.status]).toEqual([200, 401]);
    for (const res of [ok, refused]) {
      for (const [name, value] of SECURITY_HEADERS) expect([name, res.headers.get(name)]).toEqual([name, value]);
      expect(res.headers.get('content-security-policy')).toBe("default-src 'none'; frame-ancestors 'none'");
      expect(res.headers.get('x-powered-by')).toBeNull();
    }
  });

  test('answers with the documented fields, the model asked for, and Ollama\'s own token counts', async () => {
    const res = await postJson(chatUrl(), { prompt: 'Explain REST APIs in one sentence.', model: 'covalid-1.0' }, auth);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(res.headers.get('x-request-id')).toMatch(/^req_[0-9a-f]{32}$/);
    expect(Object.keys(res.body).sort()).toEqual(['completion_tokens', 'done', 'elapsed_ms', 'model', 'prompt_tokens', 'response', 'total_tokens']);
    expect(res.body.response).toBe('Echo: Explain REST APIs in one sentence.');
    expect(res.body.model).toBe('covalid-1.0');
    expect(res.body.done).toBe(true);
    expect(typeof res.body.elapsed_ms).toBe('number');
    // The double counts prompt words + 1 and one token per word.
    expect(res.body.prompt_tokens).toBe(tokenize('Explain REST APIs in one sentence.').length + 1);
    expect(res.body.completion_tokens).toBe(tokenize('Echo: Explain REST APIs in one sentence.').length);
    expect(res.body.total_tokens).toBe(res.body.prompt_tokens + res.body.completion_tokens);

    // What Ollama received: the alias resolved, the prompt on /api/generate, streamed, no forced options.
    const [sent] = h.double.generations();
    expect(sent?.path).toBe('/api/generate');
    expect(sent?.body).toMatchObject({ model: 'llama3.2', prompt: 'Explain REST APIs in one sentence.', stream: true, options: {} });
  });

  test('a long conversation: Ollama\'s final line, with the whole context, is longer than the relay\'s read-ahead', async () => {
    // 30,000 words: the final /api/generate line carries ~30,000 token ids (~200 KB), past the 64 KiB
    // the answer stream reads ahead of its consumer. Such a line once paused the socket with nothing
    // for the consumer to take, and the request hung until the body timeout.
    const prompt = Array.from({ length: 30_000 }, (_, i) => `w${i}`).join(' ');
    const res = await postJson(chatUrl(), { prompt, model: 'covalid-1.0' }, auth);
    expect(res.status).toBe(200);
    expect(res.body.response).toBe(`Echo: ${prompt}`);
    expect(res.body.prompt_tokens).toBe(30_001);
    const [sent] = h.double.generations();
    expect(sent?.completed).toBe(true);
  });

  test('a proxy in front of Ollama that sends more after the final line: the answer stands, the gateway goes on', async () => {
    h.double.queue.push({ kind: 'reply', tokens: ['All', ' here'], linesAfterDone: 300 }); // ~150 KB after done
    const res = await postJson(chatUrl(), { prompt: 'and then some' }, auth);
    expect(res.status).toBe(200);
    expect(res.body.response).toBe('All here');
    // The next request is served (that connection was closed, not left paused holding a slot).
    const next = await postJson(chatUrl(), { prompt: 'next' }, auth);
    expect(next.status).toBe(200);
    expect(next.body.response).toBe('Echo: next');
  });

  test('defaults to covalid-1.0 and keeps an incoming well-formed request id', async () => {
    const res = await postJson(chatUrl(), { prompt: 'hi' }, { ...auth, 'X-Request-Id': 'client-id-12345' });
    expect(res.status).toBe(200);
    expect(res.body.model).toBe('covalid-1.0');
    expect(res.headers.get('x-request-id')).toBe('client-id-12345');
    expect(h.double.generations()[0]?.body?.model).toBe('llama3.2');
  });

  test('a malformed incoming request id is replaced', async () => {
    const res = await postJson(chatUrl(), { prompt: 'hi' }, { ...auth, 'X-Request-Id': 'bad id with spaces' });
    expect(res.headers.get('x-request-id')).toMatch(/^req_/);
  });

  test('falls back to tiktoken when Ollama omits the counts (it omits zeros)', async () => {
    h.double.queue.push({ kind: 'reply', tokens: ['Hello', ' world'], promptEvalCount: null, evalCount: null });
    const res = await postJson(chatUrl(), { prompt: 'Say hello world' }, auth);
    expect(res.status).toBe(200);
    expect(res.body.response).toBe('Hello world');
    expect(res.body.completion_tokens).toBe(2); // tiktoken: "Hello", " world"
    expect(res.body.prompt_tokens).toBeGreaterThan(0);
  });

  test('keeps the text Ollama puts on its final line', async () => {
    h.double.queue.push({ kind: 'reply', tokens: ['Bon', 'jour', ' ça va 😀'], lastTokenOnDoneLine: true });
    const res = await postJson(chatUrl(), { prompt: 'x' }, auth);
    expect(res.body.response).toBe('Bonjour ça va 😀');
  });

  test.each([
    [{}, 'Missing "prompt" in request body.'],
    [{ model: 'covalid-1.0' }, 'Missing "prompt" in request body.'],
    [{ prompt: '' }, '"prompt" must be a non-empty string.'],
    [{ prompt: 42 }, '"prompt" must be a non-empty string.'],
    [{ prompt: 'hi', model: 7 }, '"model" must be a non-empty string when given.'],
  ])('400 for body %j', async (body, message) => {
    const res = await postJson(chatUrl(), body, auth);
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ error: message });
    expect(h.double.generations()).toHaveLength(0);
  });

  test('400 JSON for a malformed body, 413 for one over the limit', async () => {
    const bad = await postJson(chatUrl(), '{"prompt": ', auth);
    expect(bad.status).toBe(400);
    expect(bad.body).toEqual({ error: 'The request body is not valid JSON.' });
    const big = await postJson(chatUrl(), { prompt: 'x'.repeat(1_100_000) }, auth);
    expect(big.status).toBe(413);
    expect(big.body.error).toMatch(/larger than the limit/);
    expect(h.double.generations()).toHaveLength(0);
  });

  test.each([
    ['no headers', {}],
    ['unknown key', { 'X-Client-Key': 'ck_nope', 'X-Client-Secret': 'cs_nope' }],
    ['wrong secret', () => ({ 'X-Client-Key': creds.clientKey, 'X-Client-Secret': 'cs_wrong' })],
    ['secret only', () => ({ 'X-Client-Secret': creds.clientSecret })],
  ])('401 with auth_required for %s', async (_name, headers) => {
    const res = await postJson(chatUrl(), { prompt: 'hi' }, typeof headers === 'function' ? headers() : headers);
    expect(res.status).toBe(401);
    expect(res.body.auth_required).toBe(true);
    expect(typeof res.body.error).toBe('string');
    expect(h.double.generations()).toHaveLength(0);
  });

  test('a revoked key is refused on the next request', async () => {
    const other = h.createKey('to-revoke');
    const headers = { 'X-Client-Key': other.clientKey, 'X-Client-Secret': other.clientSecret };
    expect((await postJson(chatUrl(), { prompt: 'hi' }, headers)).status).toBe(200);
    expect(h.store.revokeKey(other.clientKey)).toBe(true);
    const res = await postJson(chatUrl(), { prompt: 'hi' }, headers);
    expect(res.status).toBe(401);
    expect(res.body).toEqual({ error: 'Invalid client_key or client_secret.', auth_required: true });
  });

  test.each(['GET', 'PUT', 'DELETE'])('405 with Allow: POST for %s', async (method) => {
    const res = await fetch(chatUrl(), { method, headers: auth });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('POST');
    expect(await res.json()).toEqual({ error: 'Only POST is allowed on /api/chat.php.' });
  });

  test('404 naming the model for an unknown model, without a generation', async () => {
    const res = await postJson(chatUrl(), { prompt: 'hi', model: 'covalid-9.9' }, auth);
    expect(res.status).toBe(404);
    expect(res.body.error).toContain('covalid-9.9');
    expect(h.double.generations()).toHaveLength(0);
  });

  test('an Ollama model works under its own name', async () => {
    const res = await postJson(chatUrl(), { prompt: 'hi', model: 'qwen3:8b' }, auth);
    expect(res.status).toBe(200);
    expect(res.body.model).toBe('qwen3:8b');
    expect(h.double.generations()[0]?.body?.model).toBe('qwen3:8b');
  });

  test('502 when Ollama fails mid-answer, breaks the connection, ends without done, or answers garbage', async () => {
    const cases = [
      { kind: 'error-mid' as const, tokens: ['Hel', 'lo'], message: 'model runner has unexpectedly stopped' },
      { kind: 'die-mid' as const, tokens: ['Hel', 'lo'] },
      { kind: 'no-done' as const, tokens: ['Hel', 'lo'] },
      { kind: 'garbage' as const, body: '<html>proxy error</html>' },
      { kind: 'error-before' as const, status: 500, message: 'llama-server process has terminated: exit status 2' },
    ];
    for (const behaviour of cases) {
      h.double.queue.push(behaviour);
      const res = await postJson(chatUrl(), { prompt: 'hi' }, auth);
      expect([behaviour.kind, res.status]).toEqual([behaviour.kind, 502]);
      expect(typeof res.body.error).toBe('string');
    }
  });

  test('503 with Retry-After when Ollama is busy', async () => {
    h.double.queue.push({ kind: 'error-before', status: 503, message: 'server busy, please try again.  maximum pending requests exceeded' });
    const res = await postJson(chatUrl(), { prompt: 'hi' }, auth);
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(res.body.error).toMatch(/busy/);
  });

  test('502 when Ollama is unreachable', async () => {
    const gone = await startOllamaDouble();
    const url = gone.url;
    await gone.close();
    const h2 = await startHarness({ env: { OLLAMA_HOST: url } });
    try {
      const k = h2.createKey();
      const res = await postJson(`${h2.url}/api/chat.php`, { prompt: 'hi' }, { 'X-Client-Key': k.clientKey, 'X-Client-Secret': k.clientSecret });
      expect(res.status).toBe(502);
      expect(res.body.error).toMatch(/unreachable/i);
    } finally {
      await h2.close();
    }
  });

  test('every request is in the usage table; secrets are not in the database file', async () => {
    const res = await postJson(chatUrl(), { prompt: 'count me' }, { ...auth, 'X-Request-Id': 'usage-check-0001' });
    expect(res.status).toBe(200);
    const row = h.store.db.prepare('SELECT * FROM usage WHERE request_id = ?').get('usage-check-0001') as Record<string, unknown>;
    expect(row).toMatchObject({
      route: 'covalid.chat',
      model: 'covalid-1.0',
      status: 200,
      prompt_tokens: res.body.prompt_tokens,
      completion_tokens: res.body.completion_tokens,
      key_id: expect.any(Number),
      org_id: expect.stringMatching(/^org_/),
    });
    const denied = await postJson(chatUrl(), { prompt: 'x' }, { 'X-Client-Key': creds.clientKey, 'X-Client-Secret': 'cs_bad', 'X-Request-Id': 'usage-check-0002' });
    expect(denied.status).toBe(401);
    expect(h.store.db.prepare('SELECT status, error_code FROM usage WHERE request_id = ?').get('usage-check-0002')).toEqual({ status: 401, error_code: 'unauthenticated' });

    h.store.db.pragma('wal_checkpoint(TRUNCATE)');
    const bytes = fs.readFileSync(h.dbFile);
    expect(bytes.includes(Buffer.from(creds.clientSecret))).toBe(false);
    expect(bytes.includes(Buffer.from(creds.apiKey))).toBe(false);
    expect(bytes.includes(Buffer.from(creds.clientKey))).toBe(true); // the public id is stored as is
  });

  test('unknown paths answer JSON 404, never HTML', async () => {
    const res = await fetch(`${h.url}/nope`);
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(res.headers.get('x-request-id')).toBeTruthy();
    expect(await res.json()).toEqual({ error: 'No route for GET /nope.' });
  });

  test('GET /health reports each backend with its version', async () => {
    const res = await fetch(`${h.url}/health`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { status: string; backends: Array<Record<string, unknown>> };
    expect(body.status).toBe('ok');
    expect(body.backends).toEqual([
      {
        url: h.double.url,
        reachable: true,
        version: '0.32.15',
        // An earlier test's 500 may have put the host in its cool-down; it is still the one serving.
        state: expect.stringMatching(/^(up|cooling)$/),
        models: h.double.models.map((m) => m.name),
        in_flight: 0,
        // Earlier tests' 500s may be listed here; what it lists is tested in backends.test.ts.
        failing_models: expect.arrayContaining([]),
      },
    ]);
  });
});
