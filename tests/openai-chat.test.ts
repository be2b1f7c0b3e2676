/**
 * `POST /v1/chat/completions` without streaming, through the real `openai` SDK and raw HTTP:
 * the reply's shape, every mapped parameter as Ollama received it, and the OpenAI error classes.
 */
import OpenAI from 'openai';
import { startHarness, postJson, type Harness } from './support/harness';
import { startOllamaDouble, tokenize } from './support/ollama-double';

const PNG_BASE64 = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';

describe('POST /v1/chat/completions (non-streaming)', () => {
  let h: Harness;
  let key: ReturnType<Harness['createKey']>;
  let client: OpenAI;
  const url = () => `${h.url}/v1/chat/completions`;
  const bearer = () => ({ Authorization: `Bearer ${key.apiKey}` });
  /** The body of the i-th generation Ollama received. */
  const sent = (i = 0) => h.double.generations()[i]?.body as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- checked field by field

  beforeAll(async () => {
    h = await startHarness();
    key = h.createKey('openai-app');
    client = new OpenAI({ apiKey: key.apiKey, baseURL: `${h.url}/v1` });
  });
  afterAll(() => h.close());
  beforeEach(() => {
    h.double.requests.length = 0;
    h.double.queue.length = 0;
  });

  test('the SDK gets a chat.completion with Ollama\'s counts, the model asked for and organization_id', async () => {
    const res = await client.chat.completions.create({ model: 'covalid-1.0', messages: [{ role: 'user', content: 'Hello there' }] });
    expect(res.id).toMatch(/^chatcmpl-[A-Za-z0-9]{29}$/);
    expect(res.object).toBe('chat.completion');
    expect(res.model).toBe('covalid-1.0');
    expect(Math.abs(res.created - Date.now() / 1000)).toBeLessThan(5);
    expect(res.system_fingerprint).toBe('fp_ollama');
    expect(res.choices).toEqual([
      { index: 0, message: { role: 'assistant', content: 'Echo: Hello there', refusal: null }, logprobs: null, finish_reason: 'stop' },
    ]);
    const completion = tokenize('Echo: Hello there').length;
    const prompt = 4 + tokenize('Hello there').length; // the double's count for one message
    expect(res.usage).toEqual({ prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion });
    expect((res as unknown as { organization_id: string }).organization_id).toBe(key.org.id);

    const body = sent();
    expect(h.double.generations()[0]?.path).toBe('/api/chat');
    // Nothing forced: no temperature/top_p defaults, the alias resolved, streamed from Ollama.
    expect(body).toMatchObject({ model: 'llama3.2', stream: true, messages: [{ role: 'user', content: 'Hello there' }], options: {} });
    expect(body.format).toBeUndefined();
    expect(body.tools).toBeUndefined();
  });

  test('an Ollama model configured in another case is served as Ollama would serve it', async () => {
    h.store.setModel({ name: 'house-llama', ollamaModel: 'Llama3.2' }); // Ollama's names are case-insensitive
    const res = await client.chat.completions.create({ model: 'house-llama', messages: [{ role: 'user', content: 'Hello there' }] });
    expect(res.choices[0]?.message.content).toBe('Echo: Hello there');
    expect(sent().model).toBe('Llama3.2'); // passed on as configured: Ollama resolves it
    // Ollama's own names work in any case too (the gateway lists and matches them case-insensitively).
    const own = await client.chat.completions.create({ model: 'LLAMA3.2:Latest', messages: [{ role: 'user', content: 'again' }] });
    expect(own.choices[0]?.message.content).toBe('Echo: again');
    expect(sent(1).model).toBe('llama3.2:latest'); // in the host's spelling: one name per model
  });

  test('raw reply: application/json, x-request-id, all keys present', async () => {
    const res = await postJson(url(), { model: 'covalid-1.0', messages: [{ role: 'user', content: 'hi' }] }, bearer());
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(res.headers.get('x-request-id')).toMatch(/^req_/);
    expect(Object.keys(res.body).sort()).toEqual(['choices', 'created', 'id', 'model', 'object', 'organization_id', 'system_fingerprint', 'usage']);
  });

  test.each([
    ['X-API-Key', (k: string) => ({ 'X-API-Key': k }), ''],
    ['?api_key=', () => ({}), '?api_key='],
  ])('the key is also accepted as %s', async (_name, headers, query) => {
    const res = await postJson(`${url()}${query ? query + key.apiKey : ''}`, { model: 'covalid-1.0', messages: [{ role: 'user', content: 'hi' }] }, headers(key.apiKey));
    expect(res.status).toBe(200);
  });

  test('AimiChat requests without a model use the default model', async () => {
    const res = await postJson(url(), { messages: [{ role: 'user', content: 'hi' }], max_tokens: 100, temperature: 0.7 }, bearer());
    expect(res.status).toBe(200);
    expect(res.body.model).toBe('covalid-1.0');
    expect(sent().options).toEqual({ num_predict: 100, temperature: 0.7 });
  });

  describe('parameter mapping, as Ollama received it', () => {
    const create = (extra: Record<string, unknown>, messages: unknown[] = [{ role: 'user', content: 'hi' }]) =>
      postJson(url(), { model: 'covalid-1.0', messages, ...extra }, bearer());

    test('max_tokens → options.num_predict', async () => {
      expect((await create({ max_tokens: 7 })).status).toBe(200);
      expect(sent().options).toEqual({ num_predict: 7 });
    });

    test('max_completion_tokens → options.num_predict, and wins over max_tokens', async () => {
      expect((await create({ max_completion_tokens: 5, max_tokens: 9 })).status).toBe(200);
      expect(sent().options).toEqual({ num_predict: 5 });
    });

    test('stop: a string becomes an array; an array stays', async () => {
      await create({ stop: 'END' });
      await create({ stop: ['a', 'b'] });
      expect(sent(0).options).toEqual({ stop: ['END'] });
      expect(sent(1).options).toEqual({ stop: ['a', 'b'] });
    });

    test('temperature, top_p, seed and penalties only when given (null counts as not given)', async () => {
      await create({ temperature: 0.2, top_p: 0.9, seed: 42, presence_penalty: 0.5, frequency_penalty: -0.5 });
      await create({ temperature: null, top_p: null });
      expect(sent(0).options).toEqual({ temperature: 0.2, top_p: 0.9, seed: 42, presence_penalty: 0.5, frequency_penalty: -0.5 });
      expect(sent(1).options).toEqual({});
    });

    test('developer role → system; text parts joined', async () => {
      await create({}, [
        { role: 'developer', content: 'Be brief.' },
        { role: 'system', content: [{ type: 'text', text: 'One' }, { type: 'text', text: 'Two' }] },
        { role: 'user', content: 'hi' },
      ]);
      expect(sent().messages).toEqual([
        { role: 'system', content: 'Be brief.' },
        { role: 'system', content: 'One\nTwo' },
        { role: 'user', content: 'hi' },
      ]);
    });

    test('image_url data URLs → images (base64 without the prefix)', async () => {
      const res = await create({}, [
        { role: 'user', content: [{ type: 'text', text: 'What is this?' }, { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG_BASE64}`, detail: 'low' } }] },
      ]);
      expect(res.status).toBe(200);
      expect(sent().messages).toEqual([{ role: 'user', content: 'What is this?', images: [PNG_BASE64] }]);
    });

    test('an http(s) image URL is a 400 naming the part, without a generation', async () => {
      const res = await create({}, [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://example.com/cat.png' } }] }]);
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({ type: 'invalid_request_error', param: 'messages[0].content[0].image_url', code: null });
      expect(res.body.error.message).toMatch(/data URL/);
      expect(h.double.generations()).toHaveLength(0);
    });

    test('response_format json_object → "json"; json_schema → the schema', async () => {
      const schema = { type: 'object', properties: { a: { type: 'number' } }, required: ['a'] };
      await create({ response_format: { type: 'json_object' } });
      await create({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema, strict: true } } });
      await create({ response_format: { type: 'text' } });
      expect(sent(0).format).toBe('json');
      expect(sent(1).format).toEqual(schema);
      expect(sent(2).format).toBeUndefined();
    });

    test('tools → Ollama tools; tool_choice "none" drops them', async () => {
      const tools = [{ type: 'function', function: { name: 'get_weather', description: 'Weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
      await create({ tools });
      await create({ tools, tool_choice: 'none' });
      expect(sent(0).tools).toEqual(tools);
      expect(sent(1).tools).toBeUndefined();
    });

    test('assistant tool_calls → arguments object; tool message → tool_name from the earlier call', async () => {
      const res = await create({}, [
        { role: 'user', content: 'Weather in Paris?' },
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
        { role: 'tool', tool_call_id: 'call_1', content: '18°C' },
      ]);
      expect(res.status).toBe(200);
      expect(sent().messages).toEqual([
        { role: 'user', content: 'Weather in Paris?' },
        { role: 'assistant', content: '', tool_calls: [{ function: { name: 'get_weather', arguments: { city: 'Paris' } } }] },
        { role: 'tool', content: '18°C', tool_name: 'get_weather' },
      ]);
    });

    test('reasoning_effort → think', async () => {
      await create({ reasoning_effort: 'none' });
      await create({ reasoning_effort: 'high' });
      expect(sent(0).think).toBe(false);
      expect(sent(1).think).toBe('high');
    });

    test('unknown fields are ignored, not rejected', async () => {
      const res = await create({ user: 'u1', metadata: { a: 'b' }, store: false, logit_bias: { '1': 2 }, some_future_field: true });
      expect(res.status).toBe(200);
    });
  });

  test('tool calls from Ollama come back with string arguments, content null and finish_reason tool_calls', async () => {
    h.double.queue.push({ kind: 'reply', tokens: [], toolCalls: [{ name: 'get_weather', arguments: { city: 'Paris', days: 2 } }] });
    const res = await client.chat.completions.create({
      model: 'covalid-1.0',
      messages: [{ role: 'user', content: 'Weather?' }],
      tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } }],
    });
    const choice = res.choices[0];
    expect(choice?.finish_reason).toBe('tool_calls');
    expect(choice?.message.content).toBeNull();
    expect(choice?.message.tool_calls).toEqual([
      { id: expect.stringMatching(/^call_/), type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris","days":2}' } },
    ]);
  });

  test('finish_reason length when num_predict cut the answer', async () => {
    h.double.queue.push({ kind: 'reply', tokens: ['a ', 'b ', 'c ', 'd '] });
    const res = await client.chat.completions.create({ model: 'covalid-1.0', messages: [{ role: 'user', content: 'x' }], max_tokens: 2 });
    expect(res.choices[0]?.finish_reason).toBe('length');
    expect(res.choices[0]?.message.content).toBe('a b ');
  });

  describe('400 invalid_request_error with param, and no generation', () => {
    test.each([
      ['n>1', { n: 2 }, 'n'],
      ['stream_options without stream', { stream_options: { include_usage: true } }, 'stream_options'],
      ['temperature out of range', { temperature: 3 }, 'temperature'],
      ['messages empty', { messages: [] }, 'messages'],
      ['unknown role', { messages: [{ role: 'wizard', content: 'x' }] }, 'messages[0].role'],
      ['content not a string', { messages: [{ role: 'user', content: 42 }] }, 'messages[0].content'],
      ['audio part', { messages: [{ role: 'user', content: [{ type: 'input_audio', input_audio: { data: 'x', format: 'wav' } }] }] }, 'messages[0].content[0].type'],
      ['image part without image_url', { messages: [{ role: 'user', content: [{ type: 'image_url' }] }] }, 'messages[0].content[0].image_url'],
      ['bad tool-call arguments', { messages: [{ role: 'assistant', content: null, tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{oops' } }] }] }, 'messages[0].tool_calls[0].function.arguments'],
      ['tool result for no call', { messages: [{ role: 'tool', tool_call_id: 'nope', content: 'x' }] }, 'messages[0].tool_call_id'],
      ['max_tokens not an integer', { max_tokens: 1.5 }, 'max_tokens'],
    ])('%s', async (_name, extra, param) => {
      const res = await postJson(url(), { model: 'covalid-1.0', messages: [{ role: 'user', content: 'hi' }], ...extra }, bearer());
      expect(res.status).toBe(400);
      expect(res.body).toEqual({ error: { message: expect.any(String), type: 'invalid_request_error', param, code: null } });
      expect(h.double.generations()).toHaveLength(0);
    });

    test('the SDK raises BadRequestError', async () => {
      const err = await client.chat.completions.create({ model: 'covalid-1.0', messages: [{ role: 'user', content: 'hi' }], n: 3 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.BadRequestError);
      expect((err as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('n');
    });

    test('malformed JSON', async () => {
      const res = await postJson(url(), '{"model": ', bearer());
      expect(res.status).toBe(400);
      expect(res.body).toEqual({ error: { message: 'The request body is not valid JSON.', type: 'invalid_request_error', param: null, code: null } });
    });
  });

  test('401 invalid_api_key (AuthenticationError) for a missing or wrong key', async () => {
    const bad = new OpenAI({ apiKey: 'sk-wrong', baseURL: `${h.url}/v1` });
    const err = await bad.chat.completions.create({ model: 'covalid-1.0', messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
    const res = await postJson(url(), { model: 'covalid-1.0', messages: [{ role: 'user', content: 'hi' }] });
    expect(res.status).toBe(401);
    expect(res.body).toEqual({ error: { message: expect.stringMatching(/API key/), type: 'invalid_request_error', param: null, code: 'invalid_api_key' } });
    expect(h.double.generations()).toHaveLength(0);
  });

  test('404 model_not_found (NotFoundError) for an unknown model; unknown /v1 paths are OpenAI-shaped 404s', async () => {
    const err = await client.chat.completions.create({ model: 'gpt-9', messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    expect((err as InstanceType<typeof OpenAI.NotFoundError>).code).toBe('model_not_found');
    const res = await fetch(`${h.url}/v1/nope`, { headers: bearer() });
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ error: { message: 'No route for GET /v1/nope.', type: 'invalid_request_error', param: null, code: null } });
    expect(h.double.generations()).toHaveLength(0);
  });

  test('429 insufficient_quota (RateLimitError) with x-should-retry false: one attempt, no generation', async () => {
    const poor = h.createKey('poor', 0);
    h.store.setModel({ name: 'priced', ollamaModel: 'llama3.2', inputMicroPer1k: 1000, outputMicroPer1k: 1000 });
    const sdk = new OpenAI({ apiKey: poor.apiKey, baseURL: `${h.url}/v1` }); // default maxRetries: 2
    const err = await sdk.chat.completions.create({ model: 'priced', messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    const e = err as InstanceType<typeof OpenAI.RateLimitError>;
    expect(e.headers.get('x-should-retry')).toBe('false');
    expect(e.error).toMatchObject({ type: 'insufficient_quota', code: 'insufficient_quota', param: null });
    expect(h.double.generations()).toHaveLength(0);
    const attempts = h.store.db.prepare('SELECT status, error_code FROM usage WHERE org_id = ?').all(poor.org.id);
    expect(attempts).toEqual([{ status: 429, error_code: 'insufficient_credits' }]);
  });

  test('502 server_error when Ollama fails; 503 with Retry-After when it is busy', async () => {
    const sdk = new OpenAI({ apiKey: key.apiKey, baseURL: `${h.url}/v1`, maxRetries: 0 });
    h.double.queue.push({ kind: 'error-mid', tokens: ['Hel'], message: 'model runner has unexpectedly stopped' });
    const failed = await sdk.chat.completions.create({ model: 'covalid-1.0', messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(OpenAI.InternalServerError);
    expect((failed as InstanceType<typeof OpenAI.APIError>).status).toBe(502);

    h.double.queue.push({ kind: 'error-before', status: 503, message: 'server busy, please try again.  maximum pending requests exceeded' });
    const res = await postJson(url(), { model: 'covalid-1.0', messages: [{ role: 'user', content: 'hi' }] }, bearer());
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(res.headers.get('x-should-retry')).toBeNull();
    expect(res.body.error).toMatchObject({ type: 'server_error', param: null, code: null });
    expect(res.body.error.message).toMatch(/busy/);
  });

  test('502 when Ollama is unreachable', async () => {
    const gone = await startOllamaDouble();
    const goneUrl = gone.url;
    await gone.close();
    const h2 = await startHarness({ env: { OLLAMA_HOST: goneUrl } });
    try {
      const k = h2.createKey();
      const res = await postJson(`${h2.url}/v1/chat/completions`, { model: 'covalid-1.0', messages: [{ role: 'user', content: 'hi' }] }, { Authorization: `Bearer ${k.apiKey}` });
      expect(res.status).toBe(502);
      expect(res.body.error).toMatchObject({ type: 'server_error', param: null, code: null });
      expect(res.body.error.message).toMatch(/unreachable/i);
    } finally {
      await h2.close();
    }
  });
});
