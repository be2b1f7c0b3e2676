/**
 * `POST /v1/embeddings` (float and base64, the SDK's default) and `GET /v1/models[/{id}]`.
 */
import OpenAI from 'openai';
import { startHarness, postJson, type Harness } from './support/harness';
import { embedding, tokenize } from './support/ollama-double';

/** What a float64 vector becomes after a float32 round trip. */
const asFloat32 = (v: number[]) => Array.from(Float32Array.from(v));

describe('/v1 embeddings and models', () => {
  let h: Harness;
  let key: ReturnType<Harness['createKey']>;
  let client: OpenAI;
  const bearer = () => ({ Authorization: `Bearer ${key.apiKey}` });

  beforeAll(async () => {
    h = await startHarness();
    key = h.createKey('embed-app');
    client = new OpenAI({ apiKey: key.apiKey, baseURL: `${h.url}/v1`, maxRetries: 0 });
    h.store.setModel({ name: 'embed-small', ollamaModel: 'nomic-embed-text', category: 'embedding', inputMicroPer1k: 1000 });
    h.store.setModel({ name: 'hf.co/acme/model:q4', ollamaModel: 'llama3.2' });
    h.store.setModel({ name: 'guard', ollamaModel: 'llama-guard3', category: 'moderation' });
  });
  afterAll(() => h.close());
  beforeEach(() => {
    h.double.requests.length = 0;
  });
  const embedCalls = () => h.double.requests.filter((r) => r.path === '/api/embed');

  test('the SDK default (base64) decodes to the double\'s vectors', async () => {
    const res = await client.embeddings.create({ model: 'embed-small', input: ['héllo wörld', 'second 😀'] });
    expect(res.object).toBe('list');
    expect(res.model).toBe('embed-small');
    expect(res.data.map((d) => d.index)).toEqual([0, 1]);
    expect(res.data[0]?.embedding).toEqual(asFloat32(embedding('héllo wörld')));
    expect(res.data[1]?.embedding).toEqual(asFloat32(embedding('second 😀')));
    const tokens = tokenize('héllo wörld').length + tokenize('second 😀').length;
    expect(res.usage).toEqual({ prompt_tokens: tokens, total_tokens: tokens });
    expect(embedCalls()[0]?.body).toEqual({ model: 'nomic-embed-text', input: ['héllo wörld', 'second 😀'] });
  });

  test('many inputs go to Ollama in batches of 32, and come back in order with the counts summed', async () => {
    const input = Array.from({ length: 100 }, (_, i) => `text number ${i}`);
    const res = await postJson(`${h.url}/v1/embeddings`, { model: 'embed-small', input, encoding_format: 'float' }, bearer());
    expect(res.status).toBe(200);
    expect(embedCalls().map((c) => (c.body?.input as string[]).length)).toEqual([32, 32, 32, 4]);
    expect(embedCalls().flatMap((c) => c.body?.input as string[])).toEqual(input);
    const data = res.body.data as Array<{ index: number; embedding: number[] }>;
    expect(data.map((d) => d.index)).toEqual(input.map((_, i) => i));
    expect(data.map((d) => d.embedding)).toEqual(input.map((t) => embedding(t)));
    const tokens = input.reduce((sum, t) => sum + tokenize(t).length, 0);
    expect(res.body.usage).toEqual({ prompt_tokens: tokens, total_tokens: tokens });
  });

  test('a batch whose count Ollama left out (it omits zero) is estimated alone; the others keep Ollama\'s count', async () => {
    const text = 'héllo wörld 😀 supercalifragilistic';
    const input = [...Array.from({ length: 32 }, () => text), ''];
    const res = await postJson(`${h.url}/v1/embeddings`, { model: 'embed-small', input }, bearer());
    expect(res.status).toBe(200);
    expect(embedCalls()).toHaveLength(2);
    // Batch one: Ollama's count (the double's words); batch two (''): none, estimated as 0.
    expect(res.body.usage.prompt_tokens).toBe(32 * tokenize(text).length);
  });

  test('Ollama returning the wrong number of vectors is a 502 for this request; the host stays in', async () => {
    const backend = h.services.pool.backends[0] as unknown as { embed: (model: string, input: string[], signal: AbortSignal) => Promise<{ embeddings: number[][] }> };
    const original = backend.embed;
    backend.embed = async (model, input, signal) => {
      const answer = await original.call(backend, model, input, signal);
      return { ...answer, embeddings: answer.embeddings.slice(1) };
    };
    try {
      const res = await postJson(`${h.url}/v1/embeddings`, { model: 'embed-small', input: ['a', 'b'] }, bearer());
      expect(res.status).toBe(502);
      expect(res.body.error.message).toMatch(/returned 1 embeddings for 2 inputs/);
    } finally {
      backend.embed = original;
    }
    expect(h.services.pool.status().map((host) => host.state)).toEqual(['up']);
    expect((await fetch(`${h.url}/ready`)).status).toBe(200);
  });

  test('a large answer (100 vectors of 4,096) is written in pieces: the same JSON, chunked; the SDK reads it', async () => {
    h.double.options.embedDims = 4096;
    try {
      const input = Array.from({ length: 100 }, (_, i) => `passage ${i}`);
      const res = await fetch(`${h.url}/v1/embeddings`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', ...bearer() },
        body: JSON.stringify({ model: 'embed-small', input, encoding_format: 'float' }),
      });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^application\/json/);
      expect(res.headers.get('transfer-encoding')).toBe('chunked');
      const tokens = input.reduce((sum, t) => sum + tokenize(t).length, 0);
      const expected = {
        object: 'list',
        data: input.map((t, index) => ({ object: 'embedding', index, embedding: embedding(t, 4096) })),
        model: 'embed-small',
        usage: { prompt_tokens: tokens, total_tokens: tokens },
      };
      expect(await res.text()).toBe(JSON.stringify(expected));
      const viaSdk = await client.embeddings.create({ model: 'embed-small', input: input.slice(0, 70) }); // base64, 286,720 numbers
      expect(viaSdk.data).toHaveLength(70);
      expect(viaSdk.data[69]?.embedding).toEqual(asFloat32(embedding('passage 69', 4096)));
    } finally {
      h.double.options.embedDims = undefined;
    }
  });

  test('raw base64 is the little-endian float32 bytes; float is the plain numbers', async () => {
    const b64 = await postJson(`${h.url}/v1/embeddings`, { model: 'embed-small', input: 'abc', encoding_format: 'base64' }, bearer());
    expect(b64.status).toBe(200);
    const bytes = Buffer.from(b64.body.data[0].embedding as string, 'base64');
    expect(bytes.length).toBe(8 * 4);
    const decoded = Array.from({ length: 8 }, (_, i) => bytes.readFloatLE(i * 4));
    expect(decoded).toEqual(asFloat32(embedding('abc')));

    const float = await postJson(`${h.url}/v1/embeddings`, { model: 'embed-small', input: 'abc', encoding_format: 'float' }, bearer());
    expect(float.body).toEqual({
      object: 'list',
      data: [{ object: 'embedding', index: 0, embedding: embedding('abc') }],
      model: 'embed-small',
      usage: { prompt_tokens: 1, total_tokens: 1 },
    });
    const sdkFloat = await client.embeddings.create({ model: 'embed-small', input: 'abc', encoding_format: 'float' });
    expect(sdkFloat.data[0]?.embedding).toEqual(embedding('abc'));
  });

  test('billed at the input price, in the usage table', async () => {
    const payer = h.createKey('payer', 1);
    const res = await postJson(`${h.url}/v1/embeddings`, { model: 'embed-small', input: 'one two three' }, { Authorization: `Bearer ${payer.apiKey}`, 'X-Request-Id': 'embed-bill-0001' });
    expect(res.status).toBe(200);
    const row = h.store.db.prepare('SELECT route, model, status, prompt_tokens, cost_micro FROM usage WHERE request_id = ?').get('embed-bill-0001');
    expect(row).toEqual({ route: 'openai.embeddings', model: 'embed-small', status: 200, prompt_tokens: 3, cost_micro: 3 });
    expect(h.store.getOrg(payer.org.id)?.balanceMicro).toBe(1_000_000 - 3);
  });

  test('an empty balance is a 429 without calling Ollama', async () => {
    const poor = h.createKey('poor-embed', 0);
    const res = await postJson(`${h.url}/v1/embeddings`, { model: 'embed-small', input: 'x' }, { Authorization: `Bearer ${poor.apiKey}` });
    expect(res.status).toBe(429);
    expect(res.body.error.code).toBe('insufficient_quota');
    expect(embedCalls()).toHaveLength(0);
  });

  test('embeddings obey the key\'s model allow-list and its daily allotment, like chat', async () => {
    const limited = h.createKey('embed-limited', 1);
    h.store.setKeyLimits(limited.clientKey, { allowedModels: ['embed-small'], dailyMicro: 20 });
    const headers = { Authorization: `Bearer ${limited.apiKey}` };
    const denied = await postJson(`${h.url}/v1/embeddings`, { model: 'nomic-embed-text', input: 'x' }, headers);
    expect(denied.status).toBe(403);
    expect(denied.body.error).toMatchObject({ type: 'permission_error', param: 'model' });
    // At 1 micro-credit a token, 'x' reserves 18 (1 token with the margin, +16) of the 20 allowed; the next does not fit.
    const first = await postJson(`${h.url}/v1/embeddings`, { model: 'embed-small', input: 'x' }, headers);
    expect(first.status).toBe(200);
    const spent = await postJson(`${h.url}/v1/embeddings`, { model: 'embed-small', input: 'one two three four five six seven eight nine ten' }, headers);
    expect(spent.status).toBe(429);
    expect(spent.body.message).toBe('Daily credit limit reached');
    expect(spent.headers.get('x-should-retry')).toBe('false');
    expect(embedCalls()).toHaveLength(1);
  });

  test.each([
    ['encoding_format', { encoding_format: 'binary' }],
    ['input', { input: [1, 2, 3] }],
    ['input', { input: [] }],
    ['model', { model: 'covalid-1.0' }], // a chat alias
    ['dimensions', { dimensions: 4 }],
  ])('400 with param %s', async (param, extra) => {
    const res = await postJson(`${h.url}/v1/embeddings`, { model: 'embed-small', input: 'x', ...extra }, bearer());
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ type: 'invalid_request_error', param });
    expect(embedCalls()).toHaveLength(0);
  });

  test('an Ollama model under its own name embeds too; unknown models are 404', async () => {
    const res = await client.embeddings.create({ model: 'nomic-embed-text', input: 'x' });
    expect(res.data[0]?.embedding).toEqual(asFloat32(embedding('x')));
    const err = await client.embeddings.create({ model: 'nope', input: 'x' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
  });

  test('GET /v1/models lists aliases and Ollama\'s models as OpenAI model objects', async () => {
    const page = await client.models.list();
    const ids = page.data.map((m) => m.id);
    expect(ids).toEqual(expect.arrayContaining(['covalid-1.0', 'covalid-2.0', 'embed-small', 'hf.co/acme/model:q4', 'llama3.2:latest', 'nomic-embed-text:latest']));
    for (const m of page.data) {
      expect(Object.keys(m).sort()).toEqual(['created', 'id', 'object', 'owned_by']);
      expect(m.object).toBe('model');
      expect(Number.isInteger(m.created)).toBe(true);
    }
    expect(page.data.find((m) => m.id === 'covalid-1.0')?.owned_by).toBe('gateway');
    expect(page.data.find((m) => m.id === 'qwen3:8b')?.owned_by).toBe('ollama');
    // The double's modified_at is 2026-10-01T12:00:00Z; an alias takes its Ollama model's date.
    expect(page.data.find((m) => m.id === 'covalid-1.0')?.created).toBe(Date.UTC(2026, 9, 1, 12) / 1000);
  });

  test('?category filters and ?sort=name sorts (Secton); bad values are 400', async () => {
    const res = await fetch(`${h.url}/v1/models?category=embedding&sort=name`, { headers: bearer() });
    const body = (await res.json()) as { data: Array<{ id: string }> };
    expect(body.data.map((m) => m.id)).toEqual(['embed-small', 'nomic-embed-text:latest']);
    const chat = (await (await fetch(`${h.url}/v1/models?category=chat&sort=name`, { headers: bearer() })).json()) as { data: Array<{ id: string }> };
    const chatIds = chat.data.map((m) => m.id);
    expect(chatIds).toEqual([...chatIds].sort());
    expect(chatIds).toContain('covalid-1.0');
    expect(chatIds).not.toContain('embed-small');
    expect(chatIds).not.toContain('guard');
    const bad = await fetch(`${h.url}/v1/models?category=images`, { headers: bearer() });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { param: string } }).error.param).toBe('category');
  });

  test('GET /v1/models/{id}: ids with slashes (SDK %2F and raw) and a 404 model_not_found', async () => {
    const viaSdk = await client.models.retrieve('hf.co/acme/model:q4');
    expect(viaSdk).toMatchObject({ id: 'hf.co/acme/model:q4', object: 'model', owned_by: 'gateway' });
    const raw = await fetch(`${h.url}/v1/models/hf.co/acme/model:q4`, { headers: bearer() });
    expect(raw.status).toBe(200);
    expect(((await raw.json()) as { id: string }).id).toBe('hf.co/acme/model:q4');
    expect((await client.models.retrieve('covalid-1.0')).id).toBe('covalid-1.0');
    const err = await client.models.retrieve('no such model').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    expect((err as InstanceType<typeof OpenAI.NotFoundError>).code).toBe('model_not_found');
    expect((err as Error).message).toContain("'no such model'");
  });

  test('models need a key too', async () => {
    const res = await fetch(`${h.url}/v1/models`);
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('invalid_api_key');
    expect((await fetch(`${h.url}/v1/models/covalid-1.0`)).status).toBe(401);
  });
});
