/**
 * Moderation by the local guard model: the verdict parser and category table, and `POST /v1/moderations`
 * end to end (real HTTP, SQLite on disk, the Ollama test double playing llama-guard3).
 */
import { reserveEstimate } from '../lib/metering';
import { parseVerdict } from '../lib/moderation';
import { OPENAI_CATEGORIES, openAiCategoriesFor } from '../lib/moderation-categories';
import { countInputTokens } from '../lib/tokens';
import { until } from './support/until';
import { startHarness, postJson, type Harness } from './support/harness';

const verdict = (...lines: string[]) => ({ kind: 'reply' as const, tokens: lines });
const allKeys = [...OPENAI_CATEGORIES].sort();
const trueKeys = (categories: Record<string, boolean>) => Object.keys(categories).filter((k) => categories[k]).sort();

describe('parseVerdict', () => {
  test('safe, with the whitespace models put around it', () => {
    expect(parseVerdict('\n\nsafe')).toEqual({ flagged: false, categories: openAiCategoriesFor([]), hazards: [] });
  });

  test('unsafe with hazard codes maps to OpenAI keys', () => {
    const v = parseVerdict('unsafe\nS1,S10');
    expect(v?.flagged).toBe(true);
    expect(v?.hazards).toEqual(['S1', 'S10']);
    expect(trueKeys(v!.categories)).toEqual(['hate', 'illicit/violent', 'violence']);
  });

  test.each([
    ['S2', ['illicit']],
    ['S3', ['illicit', 'sexual']],
    ['S4', ['sexual', 'sexual/minors']],
    ['S5', ['harassment']],
    ['S9', ['illicit', 'illicit/violent', 'violence']],
    ['S11', ['self-harm', 'self-harm/intent']],
    ['S12', ['sexual']],
    ['S14', ['illicit']],
  ])('%s sets %j', (code, keys) => {
    const v = parseVerdict(`unsafe\n${code}`);
    expect(trueKeys(v!.categories)).toEqual(keys);
    expect(v!.flagged).toBe(true);
  });

  test.each(['S6', 'S7', 'S8', 'S13'])('%s has no OpenAI key: reported as a hazard, not flagged', (code) => {
    const v = parseVerdict(`unsafe\n${code}`);
    expect(v).toEqual({ flagged: false, categories: openAiCategoriesFor([]), hazards: [code] });
  });

  test('anything but a Llama Guard verdict is undefined', () => {
    expect(parseVerdict('Echo: hello')).toBeUndefined();
    expect(parseVerdict('')).toBeUndefined();
  });
});

describe('POST /v1/moderations', () => {
  let h: Harness;
  let auth: Record<string, string>;
  const url = () => `${h.url}/v1/moderations`;

  beforeAll(async () => {
    h = await startHarness();
    auth = { Authorization: `Bearer ${h.createKey('mod-app').apiKey}` };
  });
  afterAll(() => h.close());
  beforeEach(() => {
    h.double.requests.length = 0;
    h.double.queue.length = 0;
  });

  test('a safe text: every key false, scores 0, text-only input types; the guard got the text as the user message', async () => {
    h.double.queue.push(verdict('safe'));
    const res = await postJson(url(), { input: 'I love kittens.' }, auth);
    expect(res.status).toBe(200);
    expect(Object.keys(res.body).sort()).toEqual(['id', 'model', 'results']);
    expect(res.body.id).toMatch(/^modr-[0-9a-f]{32}$/);
    expect(res.body.model).toBe('llama-guard3');
    expect(res.body.results).toHaveLength(1);
    const [result] = res.body.results;
    expect(Object.keys(result).sort()).toEqual(['categories', 'category_applied_input_types', 'category_scores', 'flagged', 'llama_guard_categories']);
    expect(result.flagged).toBe(false);
    expect(Object.keys(result.categories).sort()).toEqual(allKeys);
    expect(Object.values(result.categories).every((v) => v === false)).toBe(true);
    expect(Object.keys(result.category_scores).sort()).toEqual(allKeys);
    expect(Object.values(result.category_scores).every((v) => v === 0)).toBe(true);
    expect(Object.keys(result.category_applied_input_types).sort()).toEqual(allKeys);
    expect(Object.values(result.category_applied_input_types).every((v) => JSON.stringify(v) === '["text"]')).toBe(true);
    expect(result.llama_guard_categories).toEqual([]);

    const [sent] = h.double.generations();
    expect(sent?.path).toBe('/api/chat');
    expect(sent?.body).toMatchObject({
      model: 'llama-guard3',
      messages: [{ role: 'user', content: 'I love kittens.' }],
      stream: true,
      options: { temperature: 0, num_predict: 64 },
    });
  });

  test('unsafe S1,S10 → violence, illicit/violent and hate, flagged, score 1 for each', async () => {
    h.double.queue.push(verdict('unsafe', '\nS1,S10'));
    const res = await postJson(url(), { input: 'something hateful and violent', model: 'omni-moderation-latest' }, auth);
    expect(res.status).toBe(200);
    const [result] = res.body.results;
    expect(result.flagged).toBe(true);
    expect(trueKeys(result.categories)).toEqual(['hate', 'illicit/violent', 'violence']);
    for (const key of allKeys) expect(result.category_scores[key]).toBe(['hate', 'illicit/violent', 'violence'].includes(key) ? 1 : 0);
    expect(result.llama_guard_categories).toEqual(['S1', 'S10']);
  });

  test('array input: one result per input, in order, and one guard request per input', async () => {
    h.double.queue.push(verdict('safe'), verdict('unsafe', '\nS11'), verdict('unsafe\nS12'));
    const res = await postJson(url(), { input: ['hello', { type: 'text', text: 'I want to hurt myself' }, 'explicit'] }, auth);
    expect(res.status).toBe(200);
    expect(res.body.results.map((r: { flagged: boolean }) => r.flagged)).toEqual([false, true, true]);
    expect(trueKeys(res.body.results[1].categories)).toEqual(['self-harm', 'self-harm/intent']);
    expect(trueKeys(res.body.results[2].categories)).toEqual(['sexual']);
    const sent = h.double.generations();
    expect(sent).toHaveLength(3);
    expect(sent.map((r) => r.body?.model)).toEqual(['llama-guard3', 'llama-guard3', 'llama-guard3']);
    expect(sent.map((r) => (r.body?.messages as Array<{ content: string }>)[0]?.content)).toEqual(['hello', 'I want to hurt myself', 'explicit']);
  });

  test('one call is one usage row under the moderation route, however many inputs', async () => {
    const key = h.createKey('mod-usage');
    h.double.queue.push(
      { kind: 'reply', tokens: ['safe'], promptEvalCount: 11, evalCount: 2 },
      { kind: 'reply', tokens: ['safe'], promptEvalCount: 13, evalCount: 3 },
    );
    const res = await postJson(url(), { input: ['a', 'b'] }, { Authorization: `Bearer ${key.apiKey}` });
    expect(res.status).toBe(200);
    expect(h.double.generations()).toHaveLength(2);
    const rows = h.store.db.prepare('SELECT route, model, status, prompt_tokens, completion_tokens FROM usage WHERE org_id = ?').all(key.org.id);
    expect(rows).toEqual([{ route: 'openai.moderations', model: 'llama-guard3', status: 200, prompt_tokens: 24, completion_tokens: 5 }]);
  });

  describe('billing several inputs as one call (priced guard alias, limited balance)', () => {
    const texts = ['first text', 'a second, somewhat longer text to judge', 'third'];
    /** What one admission reserves for `texts`: each prompt estimate with its margin, and 64 verdict tokens each. */
    const reservedTokens = texts.reduce((sum, text) => sum + reserveEstimate(countInputTokens({ kind: 'messages', messages: [{ role: 'user', content: text }] })) + 64, 0);
    const usageOf = (orgId: string) =>
      h.store.db.prepare('SELECT status, error_code, prompt_tokens, completion_tokens, cost_micro FROM usage WHERE org_id = ?').all(orgId);

    beforeEach(() => {
      // 1 credit per 1,000 tokens each way: 1,000 micro-credits per token.
      h.store.setModel({ name: 'llama-guard3', ollamaModel: 'llama-guard3:latest', category: 'moderation', inputMicroPer1k: 1_000_000, outputMicroPer1k: 1_000_000 });
    });
    afterEach(() => {
      h.store.removeModel('llama-guard3');
      jest.restoreAllMocks();
    });

    test('three inputs: one reservation for all of them, released once, one usage row with the summed usage', async () => {
      const key = h.createKey('mod-three', 10);
      const reserve = jest.spyOn(h.store, 'reserve');
      const settle = jest.spyOn(h.store, 'settle');
      h.double.queue.push(
        { kind: 'reply', tokens: ['safe'], promptEvalCount: 10, evalCount: 2 },
        { kind: 'reply', tokens: ['unsafe', '\nS1'], promptEvalCount: 20, evalCount: 4 },
        { kind: 'reply', tokens: ['safe'], promptEvalCount: 30, evalCount: 2 },
      );
      const res = await postJson(url(), { input: texts }, { Authorization: `Bearer ${key.apiKey}` });
      expect(res.status).toBe(200);
      expect(res.body.results.map((r: { flagged: boolean }) => r.flagged)).toEqual([false, true, false]);
      expect(h.double.generations().map((r) => (r.body?.messages as Array<{ content: string }>)[0]?.content)).toEqual(texts);

      expect(reserve).toHaveBeenCalledTimes(1);
      expect(reserve).toHaveBeenCalledWith(key.org.id, reservedTokens * 1_000, []);
      expect(settle).toHaveBeenCalledTimes(1);
      expect(settle.mock.calls[0]?.[0]).toBe(reserve.mock.results[0]?.value);
      expect(usageOf(key.org.id)).toEqual([{ status: 200, error_code: null, prompt_tokens: 60, completion_tokens: 8, cost_micro: 68_000 }]);
      expect(h.store.getOrg(key.org.id)?.balanceMicro).toBe(10_000_000 - 68_000);
    });

    test('a guard answer that is no verdict fails the call: one 502 row billing what was generated, later inputs not sent', async () => {
      const key = h.createKey('mod-garbled', 10);
      const settle = jest.spyOn(h.store, 'settle');
      h.double.queue.push(
        { kind: 'reply', tokens: ['safe'], promptEvalCount: 10, evalCount: 2 },
        { kind: 'reply', tokens: ['Sure!', ' Here', ' you', ' go.'], promptEvalCount: 20, evalCount: 4 },
      );
      const res = await postJson(url(), { input: texts }, { Authorization: `Bearer ${key.apiKey}` });
      expect(res.status).toBe(502);
      expect(res.body.error.message).toContain('did not answer with a Llama Guard verdict');
      expect(h.double.generations()).toHaveLength(2);
      expect(settle).toHaveBeenCalledTimes(1);
      expect(usageOf(key.org.id)).toEqual([{ status: 502, error_code: 'backend_error', prompt_tokens: 30, completion_tokens: 6, cost_micro: 36_000 }]);
      expect(h.store.getOrg(key.org.id)?.balanceMicro).toBe(10_000_000 - 36_000);
    });

    test('a client that leaves during the second input: one 499 row billing the first, the rest of the reservation back', async () => {
      const key = h.createKey('mod-leaver', 10);
      h.double.queue.push({ kind: 'reply', tokens: ['safe'], promptEvalCount: 10, evalCount: 2 }, { kind: 'hang' });
      const controller = new AbortController();
      const res = fetch(url(), {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${key.apiKey}` },
        body: JSON.stringify({ input: texts }),
        signal: controller.signal,
      });
      await until(() => h.double.generations().length === 2, 'the second guard request');
      controller.abort();
      await expect(res).rejects.toThrow();
      await until(() => h.double.generations()[1]?.aborted === true, 'the double to see the abort');
      await until(() => usageOf(key.org.id).length > 0, 'the usage row');
      expect(usageOf(key.org.id)).toEqual([{ status: 499, error_code: 'client_closed', prompt_tokens: 10, completion_tokens: 2, cost_micro: 12_000 }]);
      expect(h.double.generations()).toHaveLength(2);
      expect(h.store.getOrg(key.org.id)?.balanceMicro).toBe(10_000_000 - 12_000);
    });
  });

  test.each([
    [{}, "Missing required parameter: 'input'."],
    [{ input: 42 }, "'input' must be a string or a non-empty array."],
    [{ input: [] }, "'input' must be a string or a non-empty array."],
    [{ input: [7] }, 'input[0] must be a string or a {"type": "text", "text": "…"} object.'],
    [{ input: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }] }, 'input[0]: the local guard model moderates text only; image inputs are not supported.'],
    [{ input: Array.from({ length: 33 }, () => 'x') }, "'input' may hold at most 32 items."],
  ])('400 OpenAI error for %j, without a guard request', async (body, message) => {
    const res = await postJson(url(), body, auth);
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ error: { message, type: 'invalid_request_error', param: 'input', code: null } });
    expect(h.double.generations()).toHaveLength(0);
  });

  test('401 as an OpenAI error for a missing or wrong key', async () => {
    const headerSets: Array<Record<string, string>> = [{}, { Authorization: 'Bearer sk-wrong' }];
    for (const headers of headerSets) {
      const res = await postJson(url(), { input: 'x' }, headers);
      expect(res.status).toBe(401);
      expect(res.body.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_api_key', param: null });
      expect(typeof res.body.error.message).toBe('string');
    }
    expect(h.double.generations()).toHaveLength(0);
  });

  test('405 with Allow: POST for GET', async () => {
    const res = await fetch(url(), { headers: auth });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('POST');
    expect(((await res.json()) as { error: { message: string } }).error.message).toBe('Only POST is allowed on /v1/moderations.');
  });

  test('502 when the model does not answer with a verdict', async () => {
    h.double.queue.push(verdict('Sure! ', 'Here is a poem.'));
    const res = await postJson(url(), { input: 'x' }, auth);
    expect(res.status).toBe(502);
    expect(res.body.error.type).toBe('server_error');
    expect(res.body.error.message).toContain('did not answer with a Llama Guard verdict');
  });

  test('a model-table alias of category moderation is used, priced and billed', async () => {
    h.store.setModel({ name: 'llama-guard3', ollamaModel: 'llama-guard3:latest', category: 'moderation', inputMicroPer1k: 1_000_000, outputMicroPer1k: 1_000_000 });
    try {
      const key = h.createKey('mod-billed', 10);
      h.double.queue.push({ kind: 'reply', tokens: ['unsafe', '\nS1'], promptEvalCount: 10, evalCount: 3 });
      const res = await postJson(url(), { input: 'x' }, { Authorization: `Bearer ${key.apiKey}` });
      expect(res.status).toBe(200);
      expect(res.body.results[0].categories.violence).toBe(true);
      expect(h.double.generations()[0]?.body?.model).toBe('llama-guard3:latest');
      // 13 tokens at 1 credit per 1,000 tokens (within the reservation, which caps a limited org's bill).
      expect(h.store.getOrg(key.org.id)?.balanceMicro).toBe(10_000_000 - 13_000);
    } finally {
      h.store.removeModel('llama-guard3');
    }
  });
});

describe('moderation when the guard model is missing', () => {
  let h: Harness;
  let auth: Record<string, string>;

  beforeAll(async () => {
    h = await startHarness({ double: { models: [{ name: 'llama3.2:latest' }] } });
    auth = { Authorization: `Bearer ${h.createKey().apiKey}` };
  });
  afterAll(() => h.close());

  test('/v1/moderations: 404 naming the model and what to pull', async () => {
    const res = await postJson(`${h.url}/v1/moderations`, { input: 'x' }, auth);
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('model_not_found');
    expect(res.body.error.message).toContain("'llama-guard3'");
    expect(res.body.error.message).toContain('ollama pull llama-guard3');
    expect(h.double.generations()).toHaveLength(0);
  });

  test('/moderate (ai-now): the same clear error', async () => {
    const res = await postJson(`${h.url}/moderate`, { input: 'x' }, auth);
    expect(res.status).toBe(404);
    expect(res.body.error.message).toContain('ollama pull llama-guard3');
  });
});
