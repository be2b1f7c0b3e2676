/**
 * Credits under concurrency: reserve the worst case before Ollama, settle the real cost after,
 * never overdraw, never lose a micro-credit.
 */
import { Store } from '../db/store';
import { startHarness, postJson, type Harness } from './support/harness';
import { countTokens } from '../lib/tokens';

describe('credit reservation and settlement', () => {
  let h: Harness;
  beforeAll(async () => {
    // A slow double keeps all requests in flight at once.
    h = await startHarness({ double: { tokenDelayMs: 20 } });
    // 1 credit per 1k output tokens, 100 tokens at most: the worst case is 0.1 credits (+ a free prompt).
    h.store.setModel({ name: 'priced', ollamaModel: 'llama3.2', inputMicroPer1k: 0, outputMicroPer1k: 1_000_000, maxOutputTokens: 100 });
  });
  afterAll(() => h.close());

  const balanceOf = (orgId: string) => h.store.getOrg(orgId)?.balanceMicro;

  test('40 concurrent requests on a balance that covers 5 serve at most 5 and bill exactly', async () => {
    const key = h.createKey('racer', 0.5);
    const start = balanceOf(key.org.id) as number;
    h.double.requests.length = 0;
    // Every answer runs to the 100-token bound, so each one costs its whole reservation.
    h.double.behaviour = () => ({ kind: 'reply', tokens: Array.from({ length: 150 }, (_, i) => ` t${i}`) });
    const headers = { 'X-Client-Key': key.clientKey, 'X-Client-Secret': key.clientSecret };
    const results = await Promise.all(Array.from({ length: 40 }, () => postJson(`${h.url}/api/chat.php`, { prompt: 'one two three', model: 'priced' }, headers)));

    const served = results.filter((r) => r.status === 200);
    const refused = results.filter((r) => r.status === 429);
    expect(served.length + refused.length).toBe(40);
    expect(served).toHaveLength(5);
    for (const r of served) expect(r.body.completion_tokens).toBe(100);
    // Refused requests never reached Ollama.
    expect(h.double.generations()).toHaveLength(served.length);
    for (const r of refused) {
      expect(r.body.error).toMatch(/Insufficient credits/);
      expect(r.headers.get('x-should-retry')).toBe('false');
    }
    // Every served request asked Ollama for at most the reserved output.
    for (const g of h.double.generations()) expect(g.body?.options).toEqual({ num_predict: 100 });

    const billed = served.reduce((sum, r) => sum + Math.ceil((r.body.completion_tokens * 1_000_000) / 1000), 0);
    const end = balanceOf(key.org.id) as number;
    expect(end).toBeGreaterThanOrEqual(0);
    expect(end).toBe(start - billed);
    const logged = h.store.db.prepare('SELECT SUM(cost_micro) AS c FROM usage WHERE org_id = ? AND status = 200').get(key.org.id) as { c: number };
    expect(logged.c).toBe(billed);
    expect(end).toBe(0);
    expect(h.store.db.prepare('SELECT COUNT(*) AS n FROM reservations').get()).toEqual({ n: 0 });
    h.double.behaviour = (body) => ({ kind: 'reply', tokens: [`Echo: ${String(body.prompt)}`] });
  });

  test('a failed request gives its whole reservation back', async () => {
    const key = h.createKey('unlucky', 1);
    h.double.queue.push({ kind: 'error-before', status: 500, message: 'boom' });
    const res = await postJson(`${h.url}/api/chat.php`, { prompt: 'x', model: 'priced' }, { 'X-Client-Key': key.clientKey, 'X-Client-Secret': key.clientSecret });
    expect(res.status).toBe(502);
    expect(balanceOf(key.org.id)).toBe(1_000_000);
  });

  test('credits held by a request in flight are never taken: after a crash the whole balance is there', () => {
    const key = h.createKey('crashed', 1);
    const reservation = h.store.reserve(key.org.id, 300_000);
    expect(reservation?.id).not.toBeNull();
    expect(balanceOf(key.org.id)).toBe(700_000); // what it can spend while the request runs
    expect(h.store.reserve(key.org.id, 800_000)).toBeUndefined(); // the hold counts against the next request
    // A crash is a new process on the same file: the hold was only in memory, nothing was written.
    const restarted = new Store(h.dbFile);
    try {
      expect(restarted.getOrg(key.org.id)?.balanceMicro).toBe(1_000_000);
      expect(restarted.refundOrphanReservations()).toBe(0);
    } finally {
      restarted.close();
    }
  });

  test('reservation rows left by an older version (which took credits at admission) are refunded at start-up', () => {
    const key = h.createKey('upgraded', 1);
    h.store.db.prepare('UPDATE orgs SET balance_micro = balance_micro - 300000 WHERE id = ?').run(key.org.id);
    h.store.db.prepare('INSERT INTO reservations (org_id, amount_micro, created_at) VALUES (?, ?, ?)').run(key.org.id, 300_000, new Date().toISOString());
    expect(balanceOf(key.org.id)).toBe(700_000);
    expect(h.store.refundOrphanReservations()).toBe(1);
    expect(balanceOf(key.org.id)).toBe(1_000_000);
    expect(h.store.db.prepare('SELECT COUNT(*) AS n FROM reservations').get()).toEqual({ n: 0 });
  });

  test('a settlement releases the hold exactly once, however often it is called', () => {
    const key = h.createKey('twice', 1);
    const reservation = h.store.reserve(key.org.id, 300_000);
    const usage = { requestId: 'twice-0001', route: 'test', principal: null, model: null, promptTokens: 1, completionTokens: 1, costMicro: 100_000, status: 200, errorCode: null, latencyMs: 1 };
    h.store.settle(reservation ?? null, 100_000, usage);
    h.store.settle(reservation ?? null, 100_000, { ...usage, requestId: 'twice-0002' });
    expect(balanceOf(key.org.id)).toBe(900_000);
  });

  test('an unlimited organisation is never refused and its usage still records the cost', async () => {
    const key = h.createKey('hobbyist');
    const res = await postJson(`${h.url}/api/chat.php`, { prompt: 'a b', model: 'priced' }, { 'X-Client-Key': key.clientKey, 'X-Client-Secret': key.clientSecret, 'X-Request-Id': 'unlimited-0001' });
    expect(res.status).toBe(200);
    expect(balanceOf(key.org.id)).toBeNull();
    const row = h.store.db.prepare('SELECT cost_micro FROM usage WHERE request_id = ?').get('unlimited-0001') as { cost_micro: number };
    expect(row.cost_micro).toBe(res.body.completion_tokens * 1000);
    // No bound was forced on Ollama for an unlimited organisation.
    expect(h.double.generations().at(-1)?.body?.options).toEqual({});
  });
});

describe('what a limited balance reserves for a prompt', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(() => h.close());

  test('tool definitions count: a prompt that is mostly tools is charged its whole price, not the text alone', async () => {
    // Priced on input only: the reservation is the prompt's estimate, and a charge never exceeds it.
    h.store.setModel({ name: 'input-priced', ollamaModel: 'llama3.2', inputMicroPer1k: 1_000_000, outputMicroPer1k: 0 });
    const key = h.createKey('tool-heavy', 100);
    const description = Array.from({ length: 3_000 }, (_, i) => `word${i % 50}`).join(' ');
    const tools = [{ type: 'function', function: { name: 'lookup', description, parameters: { type: 'object', properties: {} } } }];
    // Ollama renders the tools into the prompt, so its prompt count has them.
    const toolTokens = countTokens(JSON.stringify([{ name: 'lookup', description, parameters: { type: 'object', properties: {} } }]));
    h.double.queue.push({ kind: 'reply', tokens: ['ok'], promptEvalCount: toolTokens + 10 });
    const res = await postJson(
      `${h.url}/v1/chat/completions`,
      { model: 'input-priced', tools, messages: [{ role: 'user', content: 'hi' }] },
      { Authorization: `Bearer ${key.apiKey}`, 'X-Request-Id': 'tool-heavy-00001' },
    );
    expect(res.status).toBe(200);
    h.store.flush();
    const row = h.store.db.prepare('SELECT prompt_tokens, cost_micro FROM usage WHERE request_id = ?').get('tool-heavy-00001') as { prompt_tokens: number; cost_micro: number };
    expect(row.prompt_tokens).toBe(toolTokens + 10);
    expect(row.cost_micro).toBe((toolTokens + 10) * 1_000); // list price, not capped at the text's estimate
    expect(h.store.getOrg(key.org.id)?.balanceMicro).toBe(100_000_000 - row.cost_micro);
  });
});
