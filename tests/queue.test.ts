/**
 * The bounded fair queue: BACKEND_CONCURRENCY slots per host and model, QUEUE_LIMIT waiters, 503 past
 * that, round-robin across organisations, and a client that leaves while queued frees its place.
 */
import { until } from './support/until';
import { startHarness, postJson, type Harness } from './support/harness';
import type { Behaviour } from './support/ollama-double';

jest.setTimeout(30_000);

describe('the queue in front of Ollama', () => {
  let h: Harness;
  let keyA: Record<string, string>;
  let keyB: Record<string, string>;
  const chat = (body: Record<string, unknown>, auth: Record<string, string>, signal?: AbortSignal) =>
    fetch(`${h.url}/api/chat.php`, { method: 'POST', headers: { 'Content-Type': 'application/json', ...auth }, body: JSON.stringify(body), ...(signal && { signal }) });
  const prompts = () => h.double.generations().map((g) => g.body?.prompt);

  beforeEach(async () => {
    h = await startHarness({ env: { BACKEND_CONCURRENCY: '1', QUEUE_LIMIT: '6' } });
    // A prompt starting with "block" hangs until its client leaves; the rest are echoed.
    h.double.behaviour = (body): Behaviour =>
      String(body.prompt).startsWith('block') ? { kind: 'hang' } : { kind: 'reply', tokens: [`Echo: ${String(body.prompt)}`] };
    const a = h.createKey('org-a');
    const b = h.createKey('org-b');
    keyA = { 'X-Client-Key': a.clientKey, 'X-Client-Secret': a.clientSecret };
    keyB = { 'X-Client-Key': b.clientKey, 'X-Client-Secret': b.clientSecret };
  });
  afterEach(() => h.close());

  /** Starts a request that holds the only slot until `release()` (its client leaves). */
  async function block(auth: Record<string, string>) {
    const controller = new AbortController();
    const done = chat({ prompt: 'block' }, auth, controller.signal).catch((err: unknown) => err);
    await h.double.waitForRequests(h.double.generations().length + 1, 10_000);
    return { release: () => controller.abort(), done };
  }

  test('past QUEUE_LIMIT waiting requests: 503 with Retry-After at once, and Ollama never sees it', async () => {
    const blocker = await block(keyA);
    const waiting = [1, 2, 3, 4, 5, 6].map((i) => chat({ prompt: `wait ${i}` }, keyA));
    await until(() => h.services.pool.queueDepth === 6, 'six waiting');

    const over = await postJson(`${h.url}/api/chat.php`, { prompt: 'one too many' }, keyB);
    expect(over.status).toBe(503);
    expect(over.headers.get('retry-after')).toBe('2');
    expect(over.body.error).toMatch(/queue is full/);
    expect(prompts()).toEqual(['block']);

    blocker.release();
    const statuses = await Promise.all(waiting.map(async (p) => (await p).status));
    expect(statuses).toEqual([200, 200, 200, 200, 200, 200]);
    expect(prompts()).not.toContain('one too many');
    expect(h.double.generations()[0]?.aborted).toBe(true);
    // The refusal is in the usage log as a 503.
    expect(h.store.db.prepare("SELECT COUNT(*) AS n FROM usage WHERE status = 503 AND error_code = 'overloaded'").get()).toEqual({ n: 1 });
  });

  test('one organisation with many queued requests delays another\'s single request by at most one slot', async () => {
    const blocker = await block(keyA);
    const many = [1, 2, 3, 4, 5].map(() => chat({ prompt: 'A' }, keyA));
    await until(() => h.services.pool.queueDepth === 5, 'org A queued');
    const single = chat({ prompt: 'B' }, keyB);
    await until(() => h.services.pool.queueDepth === 6, 'org B queued');

    blocker.release();
    expect((await single).status).toBe(200);
    await Promise.all(many);
    // After the blocker: one of A's, then B's, then the rest of A's.
    expect(prompts()).toEqual(['block', 'A', 'B', 'A', 'A', 'A', 'A']);
  });

  test('a client that leaves while queued frees its place and never reaches Ollama', async () => {
    const blocker = await block(keyA);
    const leaving = new AbortController();
    const left = chat({ prompt: 'leaver' }, keyA, leaving.signal).catch((err: unknown) => err);
    await until(() => h.services.pool.queueDepth === 1, 'leaver queued');
    leaving.abort();
    await until(() => h.services.pool.queueDepth === 0, 'leaver gone from the queue');
    expect(await left).toMatchObject({ name: 'AbortError' });

    const stay = chat({ prompt: 'stay' }, keyB);
    await until(() => h.services.pool.queueDepth === 1, 'stay queued');
    blocker.release();
    expect((await stay).status).toBe(200);
    expect(prompts()).toEqual(['block', 'stay']);
    // The leaver is logged as a client that closed (499), billed nothing.
    const rows = h.store.db.prepare('SELECT status, error_code, completion_tokens, cost_micro FROM usage WHERE status = 499').all();
    expect(rows).toContainEqual({ status: 499, error_code: 'client_closed', completion_tokens: 0, cost_micro: 0 });
  });

  test('slots are per model: a busy model does not hold up another one on the same host', async () => {
    const blocker = await block(keyA);
    const other = await postJson(`${h.url}/api/chat.php`, { prompt: 'other model', model: 'covalid-2.0' }, keyB);
    expect(other.status).toBe(200);
    expect(h.services.pool.queueDepth).toBe(0);
    blocker.release();
    await blocker.done;
  });
});
