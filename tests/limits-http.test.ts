/**
 * Limits over real HTTP on the Covalid route, with a controlled clock: requests and tokens per
 * minute (per key and per organisation), daily and monthly allotments, the model allow-list and key
 * expiry. Every refusal is checked for status, headers and body, and for never reaching Ollama.
 */
import { startHarness, postJson, type Harness } from './support/harness';

const CHAT = '/api/chat.php';
let clock = Date.parse('2031-03-31T23:58:30.000Z');

describe('limits over HTTP', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ now: () => clock, double: { firstTokenDelayMs: 50 } });
    // 1 credit per 1k output tokens, at most 50 output tokens: each request reserves 0.05 credits.
    h.store.setModel({ name: 'priced', ollamaModel: 'llama3.2', outputMicroPer1k: 1_000_000, maxOutputTokens: 50 });
    h.store.setModel({ name: 'short', ollamaModel: 'llama3.2', maxOutputTokens: 20 });
  });
  afterAll(() => h.close());
  beforeEach(() => {
    h.double.requests.length = 0;
    h.double.behaviour = (body) => ({ kind: 'reply', tokens: [`Echo: ${String(body.prompt)}`] });
  });

  const auth = (key: { clientKey: string; clientSecret: string }) => ({ 'X-Client-Key': key.clientKey, 'X-Client-Secret': key.clientSecret });
  const post = (key: { clientKey: string; clientSecret: string }, body: Record<string, unknown> = { prompt: 'hi', model: 'short' }) =>
    postJson(`${h.url}${CHAT}`, body, auth(key));
  const idOf = (key: { clientKey: string }) => h.store.keyIdOf(key.clientKey) as number;
  const usageRows = (keyId: number) =>
    h.store.db.prepare('SELECT status, error_code, cost_micro FROM usage WHERE key_id = ? ORDER BY id').all(keyId) as Array<{ status: number; error_code: string | null; cost_micro: number }>;

  test('rpm 5 with 20 concurrent requests serves exactly 5; the rest get a 429 that never reaches Ollama', async () => {
    const key = h.createKey('rpm5', 10);
    h.store.setKeyLimits(key.clientKey, { rpm: 5 });
    const results = await Promise.all(Array.from({ length: 20 }, () => post(key)));
    const served = results.filter((r) => r.status === 200);
    const refused = results.filter((r) => r.status !== 200);
    expect(served).toHaveLength(5);
    expect(h.double.generations()).toHaveLength(5);
    expect(served.map((r) => r.headers.get('x-ratelimit-remaining')).sort()).toEqual(['0', '1', '2', '3', '4']);
    for (const r of served) {
      expect(r.headers.get('x-ratelimit-limit')).toBe('5');
      expect(r.headers.get('x-ratelimit-reset')).toBe('2031-03-31T23:59:00Z');
    }
    for (const r of refused) {
      expect(r.status).toBe(429);
      expect(r.body).toEqual({ error: 'Rate limit reached: 5 requests per minute for this key.' });
      expect(r.headers.get('retry-after')).toBe('30');
      expect(r.headers.get('x-ratelimit-limit')).toBe('5');
      expect(r.headers.get('x-ratelimit-remaining')).toBe('0');
      expect(r.headers.get('x-ratelimit-reset')).toBe('2031-03-31T23:59:00Z');
      // A rate limit passes: SDKs may retry it.
      expect(r.headers.get('x-should-retry')).toBeNull();
    }
    // Refusals cost nothing and leave no reservation behind; they are logged as 429s.
    const rows = usageRows(idOf(key));
    expect(rows.filter((r) => r.status === 429 && r.error_code === 'rate_limited')).toHaveLength(15);
    expect(h.store.db.prepare('SELECT COUNT(*) AS n FROM reservations').get()).toEqual({ n: 0 });

    // The next minute is a new window.
    clock += 30_000;
    const next = await post(key);
    expect(next.status).toBe(200);
    expect(next.headers.get('x-ratelimit-remaining')).toBe('4');
    expect(next.headers.get('x-ratelimit-reset')).toBe('2031-04-01T00:00:00Z');
  });

  test('an organisation limit is shared by its keys, and the tighter limit is the one reported', async () => {
    const a = h.store.createKey({ name: 'team-a', orgName: 'team' });
    const b = h.store.createKey({ name: 'team-b', orgName: 'team' });
    h.store.setKeyLimits(a.clientKey, { rpm: 10 });
    h.store.setOrgLimits(a.org.id, { rpm: 3 });
    const results = [await post(a), await post(b), await post(a), await post(b)];
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 429]);
    expect(results.map((r) => r.headers.get('x-ratelimit-limit'))).toEqual(['3', '3', '3', '3']);
    expect(results.map((r) => r.headers.get('x-ratelimit-remaining'))).toEqual(['2', '1', '0', '0']);
    expect(results[3]?.body).toEqual({ error: 'Rate limit reached: 3 requests per minute for organisation "team".' });
    expect(h.double.generations()).toHaveLength(3);
  });

  test('a key without limits gets no X-RateLimit headers; a limit set with the CLI applies from the next request', async () => {
    const key = h.createKey('free');
    const before = await post(key);
    expect(before.status).toBe(200);
    expect(before.headers.get('x-ratelimit-limit')).toBeNull();
    h.store.setKeyLimits(key.clientKey, { rpm: 1 });
    const after = await post(key);
    expect(after.headers.get('x-ratelimit-limit')).toBe('1');
    expect((await post(key)).status).toBe(429);
  });

  test('tokens per minute: estimates are held at admission, so concurrent requests cannot overshoot', async () => {
    // 'short': prompt estimate ≈ 1 token → ceil(1.25) + 16 + 20 output = 38 tokens held per request.
    const key = h.createKey('tpm', 10);
    h.store.setKeyLimits(key.clientKey, { tpm: 100 });
    const start = h.store.getOrg(key.org.id)?.balanceMicro;
    const results = await Promise.all(Array.from({ length: 6 }, () => post(key)));
    expect(results.filter((r) => r.status === 200)).toHaveLength(2);
    expect(h.double.generations()).toHaveLength(2);
    for (const r of results.filter((x) => x.status !== 200)) {
      expect(r.status).toBe(429);
      expect(r.body).toEqual({ error: 'Rate limit reached: 100 tokens per minute for this key.' });
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(r.headers.get('x-should-retry')).toBeNull();
    }
    // After settling, the counter holds the real tokens, so more requests fit in the same minute.
    const spent = results.filter((r) => r.status === 200).reduce((sum, r) => sum + (r.body.total_tokens as number), 0);
    expect(h.services.limits.limiter.peek({ key: `key:${idOf(key)}:tpm`, limit: 100 }).remaining).toBe(100 - spent);
    expect((await post(key)).status).toBe(200);
    expect(h.store.getOrg(key.org.id)?.balanceMicro).toBe(start); // the model is free: nothing billed
  });

  test('a request whose bound alone exceeds the token limit is refused with advice', async () => {
    const key = h.createKey('tiny-tpm');
    h.store.setKeyLimits(key.clientKey, { tpm: 10 });
    const res = await post(key);
    expect(res.status).toBe(429);
    expect(res.body.error).toMatch(/may use up to 38 tokens, more than the limit of 10 tokens per minute for this key; send a shorter prompt \(or fewer images\) or lower max_tokens/);
    expect(h.double.generations()).toHaveLength(0);
  });

  test('a daily allotment: 20 concurrent requests spend it exactly, then 429 with AimiChat fields until UTC midnight', async () => {
    clock = Date.parse('2031-03-31T23:59:30.000Z');
    const key = h.createKey('daily'); // unlimited balance: only the allotment limits it
    h.store.setKeyLimits(key.clientKey, { dailyMicro: 100_000 });
    h.double.behaviour = () => ({ kind: 'reply', tokens: Array.from({ length: 80 }, (_, i) => ` t${i}`) });
    const results = await Promise.all(Array.from({ length: 20 }, () => post(key, { prompt: 'go', model: 'priced' })));
    const served = results.filter((r) => r.status === 200);
    expect(served).toHaveLength(2);
    expect(h.double.generations()).toHaveLength(2);
    for (const g of h.double.generations()) expect(g.body?.options).toEqual({ num_predict: 50 });
    for (const r of results.filter((x) => x.status !== 200)) {
      expect(r.status).toBe(429);
      expect(r.body).toEqual({ error: 'Rate limit exceeded', message: 'Daily credit limit reached', limit: 0.1, used: expect.any(Number), resetAt: '2031-04-01T00:00:00Z' });
      expect(r.headers.get('x-should-retry')).toBe('false');
      expect(r.headers.get('retry-after')).toBe('30');
    }
    const billed = usageRows(idOf(key)).filter((r) => r.status === 200).reduce((s, r) => s + r.cost_micro, 0);
    expect(billed).toBe(100_000);
    expect(h.store.allotmentSpent(`key:${idOf(key)}`, 'day:2031-03-31')).toBe(100_000);
    const after = await post(key, { prompt: 'go', model: 'priced' });
    expect(after.body).toEqual({ error: 'Rate limit exceeded', message: 'Daily credit limit reached', limit: 0.1, used: 0.1, resetAt: '2031-04-01T00:00:00Z' });

    clock = Date.parse('2031-04-01T00:00:00.000Z');
    const nextDay = await post(key, { prompt: 'go', model: 'priced' });
    expect(nextDay.status).toBe(200);
    expect(h.double.generations()).toHaveLength(3);
  });

  test('a monthly organisation allotment survives the day change and resets on the first of the month', async () => {
    clock = Date.parse('2031-04-29T12:00:00.000Z');
    const key = h.createKey('monthly', 5);
    h.store.setOrgLimits(key.org.id, { monthlyMicro: 50_000 });
    h.double.behaviour = () => ({ kind: 'reply', tokens: Array.from({ length: 80 }, (_, i) => ` t${i}`) });
    expect((await post(key, { prompt: 'go', model: 'priced' })).status).toBe(200);
    const balance = h.store.getOrg(key.org.id)?.balanceMicro;
    clock = Date.parse('2031-04-30T12:00:00.000Z');
    const refused = await post(key, { prompt: 'go', model: 'priced' });
    expect(refused.status).toBe(429);
    expect(refused.body).toEqual({ error: 'Rate limit exceeded', message: 'Monthly credit limit reached', limit: 0.05, used: 0.05, resetAt: '2031-05-01T00:00:00Z' });
    expect(refused.headers.get('retry-after')).toBe(String(12 * 3600));
    expect(h.store.getOrg(key.org.id)?.balanceMicro).toBe(balance); // a refusal costs nothing
    clock = Date.parse('2031-05-01T00:00:01.000Z');
    expect((await post(key, { prompt: 'go', model: 'priced' })).status).toBe(200);
    expect(h.double.generations()).toHaveLength(2);
  });

  test('a model outside the allow-list is a 403 that names it; listed models work', async () => {
    const key = h.createKey('allow');
    h.store.setKeyLimits(key.clientKey, { allowedModels: ['short'] });
    const refused = await post(key, { prompt: 'hi', model: 'covalid-2.0' });
    expect(refused.status).toBe(403);
    expect(refused.body).toEqual({ error: "This key may not use the model 'covalid-2.0'." });
    expect(refused.headers.get('x-should-retry')).toBe('false');
    expect(h.double.generations()).toHaveLength(0);
    // Covalid's default model is not on the list either.
    expect((await post(key, { prompt: 'hi' })).status).toBe(403);
    expect((await post(key, { prompt: 'hi', model: 'short' })).status).toBe(200);
  });

  test('an expired key is a 401 from the moment it expires', async () => {
    const key = h.createKey('expiring');
    h.store.setKeyLimits(key.clientKey, { expiresAt: new Date(clock + 60_000).toISOString() });
    expect((await post(key)).status).toBe(200);
    clock += 60_000;
    const res = await post(key);
    expect(res.status).toBe(401);
    expect(res.body).toEqual({ error: `This key expired at ${new Date(clock).toISOString()}.`, auth_required: true });
    expect(res.headers.get('x-should-retry')).toBe('false');
    expect(h.double.generations()).toHaveLength(1);
  });
});

describe('IMAGE_TOKENS: what an image adds to the estimate', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ env: { IMAGE_TOKENS: '3000' } });
  });
  afterAll(() => h.close());

  test('a tokens-per-minute hold counts each image at the configured figure', async () => {
    const key = h.createKey('vision');
    h.store.setKeyLimits(key.clientKey, { tpm: 5000 });
    const ask = (images: number) =>
      postJson(
        `${h.url}/v1/chat/completions`,
        {
          model: 'covalid-1.0',
          max_tokens: 1,
          messages: [
            {
              role: 'user',
              content: [{ type: 'text', text: 'what is this?' }, ...Array.from({ length: images }, () => ({ type: 'image_url', image_url: { url: 'data:image/png;base64,aGVsbG8=' } }))],
            },
          ],
        },
        { Authorization: `Bearer ${key.apiKey}` },
      );
    expect((await ask(1)).status).toBe(200); // ~3,000 held: fits in 5,000
    const two = await ask(2); // ~6,000: more than the whole limit
    expect(two.status).toBe(429);
    expect(two.body.error.message).toMatch(/may use up to \d+ tokens, more than the limit of 5000/);
    expect(Number(/up to (\d+)/.exec(two.body.error.message)?.[1])).toBeGreaterThanOrEqual(6000);
  });

  test("a model's own figure (models set --image-tokens) wins over IMAGE_TOKENS, 0 included", async () => {
    h.store.setModel({ name: 'small-vision', ollamaModel: 'llama3.2', imageTokens: 256 });
    h.store.setModel({ name: 'big-vision', ollamaModel: 'llama3.2', imageTokens: 6000 });
    h.store.setModel({ name: 'no-vision', ollamaModel: 'llama3.2', imageTokens: 0 });
    const key = h.createKey('vision-per-model');
    h.store.setKeyLimits(key.clientKey, { tpm: 5000 });
    const ask = (model: string, images: number) =>
      postJson(
        `${h.url}/v1/chat/completions`,
        {
          model,
          max_tokens: 1,
          messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }, ...Array.from({ length: images }, () => ({ type: 'image_url', image_url: { url: 'data:image/png;base64,aGVsbG8=' } }))] }],
        },
        { Authorization: `Bearer ${key.apiKey}` },
      );
    const generations = h.double.generations().length;
    expect((await ask('small-vision', 4)).status).toBe(200); // 4 × 256, not 4 × 3,000
    const big = await ask('big-vision', 1);
    expect(big.status).toBe(429); // 6,000 for one image: more than the whole limit
    expect(Number(/up to (\d+)/.exec(big.body.error.message)?.[1])).toBeGreaterThanOrEqual(6000);
    expect(h.double.generations()).toHaveLength(generations + 1); // the refusal reached no Ollama
    // Tokens per minute spent so far: small-vision's answer. no-vision counts its image as nothing.
    expect((await ask('no-vision', 3)).status).toBe(200);
  });
});

