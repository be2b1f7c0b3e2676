/**
 * The ChatofAI envelope at /api/v1: every reply `{code, message, data, request_id}`, end to end.
 */
import { get_encoding } from 'tiktoken';
import { startHarness, postJson, type Harness } from './support/harness';

describe('envelope API (/api/v1)', () => {
  let h: Harness;
  let auth: Record<string, string>;

  beforeAll(async () => {
    h = await startHarness();
    auth = { Authorization: `Bearer ${h.createKey('envelope-app').apiKey}` };
    h.store.setModel({ name: 'env-priced', ollamaModel: 'llama3.2', inputMicroPer1k: 1_000, outputMicroPer1k: 1_000 });
  });
  afterAll(() => h.close());
  beforeEach(() => {
    h.double.requests.length = 0;
    h.double.queue.length = 0;
  });

  /** Every envelope reply has exactly these keys, and request_id is the X-Request-Id header. */
  function expectEnvelope(res: { headers: Headers; body: Record<string, unknown> }): void {
    expect(Object.keys(res.body).sort()).toEqual(['code', 'data', 'message', 'request_id']);
    expect(res.body.request_id).toBe(res.headers.get('x-request-id'));
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- test bodies are checked field by field
  async function get(path: string, headers: Record<string, string> = auth): Promise<{ status: number; headers: Headers; body: any }> {
    const res = await fetch(`${h.url}${path}`, { headers });
    return { status: res.status, headers: res.headers, body: await res.json() };
  }

  test('GET /api/v1/models: code 0, "Success", the models as data, the request id', async () => {
    const res = await get('/api/v1/models', { ...auth, 'X-Request-Id': 'envelope-req-0001' });
    expect(res.status).toBe(200);
    expectEnvelope(res);
    expect(res.body.request_id).toBe('envelope-req-0001');
    expect(res.body.code).toBe(0);
    expect(res.body.message).toBe('Success');
    expect(res.body.data.data).toContainEqual({ id: 'env-priced', inputCost: 0.001, outputCost: 0.001 });
  });

  test('POST /api/v1/chat/completions: the chat reply with its usage fields as data', async () => {
    h.double.queue.push({ kind: 'reply', tokens: ['Hi', ' there'], promptEvalCount: 1_000, evalCount: 2 });
    const res = await postJson(`${h.url}/api/v1/chat/completions`, { model: 'env-priced', messages: [{ role: 'user', content: 'Hello' }] }, auth);
    expect(res.status).toBe(200);
    expectEnvelope(res);
    expect(res.body.code).toBe(0);
    expect(res.body.data).toMatchObject({
      object: 'chat.completion',
      model: 'env-priced',
      choices: [{ message: { role: 'assistant', content: 'Hi there' }, finish_reason: 'stop' }],
      input_tokens: 1_000,
      output_tokens: 2,
      total_tokens_cost: 0.001002,
    });
    expect(h.double.generations()[0]?.body).toMatchObject({ model: 'llama3.2', messages: [{ role: 'user', content: 'Hello' }] });
  });

  test('streaming is refused with an envelope 400 before Ollama is called', async () => {
    const res = await postJson(`${h.url}/api/v1/chat/completions`, { model: 'env-priced', stream: true, messages: [{ role: 'user', content: 'x' }] }, auth);
    expect(res.status).toBe(400);
    expectEnvelope(res);
    expect(res.body).toMatchObject({ code: 40000, data: null });
    expect(res.body.message).toContain('Streaming is not available');
    expect(h.double.generations()).toHaveLength(0);
  });

  test('POST /api/v1/tokens, GET /api/v1/credits, POST /api/v1/moderate', async () => {
    const tokens = await postJson(`${h.url}/api/v1/tokens`, { text: 'count these tokens' }, auth);
    expectEnvelope(tokens);
    expect(tokens.body).toMatchObject({ code: 0, message: 'Success', data: { tokens: get_encoding('cl100k_base').encode('count these tokens').length } });

    const limited = h.createKey('envelope-limited', 2.5);
    const credits = await get('/api/v1/credits', { Authorization: `Bearer ${limited.apiKey}` });
    expectEnvelope(credits);
    expect(credits.body).toMatchObject({ code: 0, data: { credits: 2.5 } });
    expect((await get('/api/v1/credits')).body.data).toEqual({ credits: null });

    h.double.queue.push({ kind: 'reply', tokens: ['unsafe', '\nS10'] });
    const moderate = await postJson(`${h.url}/api/v1/moderate`, { input: ['hateful text'] }, auth);
    expectEnvelope(moderate);
    expect(moderate.body.code).toBe(0);
    expect(moderate.body.data.results).toHaveLength(1);
    expect(moderate.body.data.results[0]).toMatchObject({ flagged: true, categories: { hate: true, violence: false }, llama_guard_categories: ['S10'] });
  });

  test.each([
    ['GET', '/api/v1/models'],
    ['POST', '/api/v1/chat/completions'],
    ['POST', '/api/v1/tokens'],
    ['GET', '/api/v1/credits'],
    ['POST', '/api/v1/moderate'],
    // Served as Express matches routes (any case, a trailing slash), so refused in the same shape.
    ['GET', '/API/V1/models'],
    ['POST', '/api/v1/chat/completions/'],
  ])('401 envelope on %s %s without a key or with a wrong one', async (method, path) => {
    const headerSets: Array<Record<string, string>> = [{}, { Authorization: 'Bearer nope' }];
    for (const headers of headerSets) {
      const res = await fetch(`${h.url}${path}`, {
        method,
        headers: { 'Content-Type': 'application/json', ...headers },
        ...(method === 'POST' && { body: JSON.stringify({ text: 'x', input: 'x', messages: [{ role: 'user', content: 'x' }] }) }),
      });
      const body = (await res.json()) as Record<string, unknown>;
      expect(res.status).toBe(401);
      expectEnvelope({ headers: res.headers, body });
      expect(body).toMatchObject({ code: 40100, data: null });
      expect(typeof body.message).toBe('string');
    }
    expect(h.double.generations()).toHaveLength(0);
  });

  test('unknown /api/v1 paths: envelope 404', async () => {
    for (const path of ['/api/v1/backend', '/api/v1', '/api/v1/chat/completions/extra']) {
      const res = await get(path);
      expect(res.status).toBe(404);
      expectEnvelope(res);
      expect(res.body).toMatchObject({ code: 40400, data: null });
    }
  });

  test('an unknown model: 404 with its own code; a malformed body: 400; a wrong method: 405', async () => {
    const model = await postJson(`${h.url}/api/v1/chat/completions`, { model: 'nope', messages: [{ role: 'user', content: 'x' }] }, auth);
    expect(model.status).toBe(404);
    expectEnvelope(model);
    expect(model.body).toMatchObject({ code: 40401, data: null });
    expect(model.body.message).toContain('nope');

    const bad = await postJson(`${h.url}/api/v1/tokens`, '{"text": ', auth);
    expect(bad.status).toBe(400);
    expectEnvelope(bad);
    expect(bad.body).toMatchObject({ code: 40000, message: 'The request body is not valid JSON.', data: null });

    const res = await fetch(`${h.url}/api/v1/models`, { method: 'DELETE', headers: auth });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET');
    expect(await res.json()).toMatchObject({ code: 40500, message: 'Only GET is allowed on /api/v1/models.', data: null });
  });

  test.each([
    ['/models', 'GET', 'POST'],
    ['/chat/completions', 'POST', 'GET'],
    ['/tokens', 'POST', 'GET'],
    ['/credits', 'GET', 'POST'],
    ['/moderate', 'POST', 'PUT'],
  ])('%s takes %s only: %s is a 405 envelope', async (path, allowed, wrong) => {
    const res = await fetch(`${h.url}/api/v1${path}`, { method: wrong, headers: auth });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe(allowed);
    expect(await res.json()).toMatchObject({ code: 40500, message: `Only ${allowed} is allowed on /api/v1${path}.`, data: null });
  });

  test('a limited organisation that cannot pay: 429 with code 42901', async () => {
    const broke = h.createKey('envelope-broke', 0);
    const res = await postJson(`${h.url}/api/v1/chat/completions`, { model: 'env-priced', messages: [{ role: 'user', content: 'x' }] }, { Authorization: `Bearer ${broke.apiKey}` });
    expect(res.status).toBe(429);
    expectEnvelope(res);
    expect(res.body).toMatchObject({ code: 42901, data: null });
    expect(res.headers.get('x-should-retry')).toBe('false');
    expect(h.double.generations()).toHaveLength(0);
  });
});
