/**
 * The pool's re-check for a model no host lists, driven directly with a clock the test moves: a client
 * looping on a made-up name costs each host at most one /api/tags per `recheckMs`, and a model pulled
 * a moment ago is found once that interval has passed.
 */
import { BackendPool } from '../lib/backends/pool';
import { OllamaBackend } from '../lib/backends/ollama';
import { startOllamaDouble, type OllamaDouble } from './support/ollama-double';

jest.setTimeout(15_000);

const RECHECK_MS = 2_000;

describe('re-checking the model lists for an unknown model', () => {
  let doubles: OllamaDouble[];
  let backends: OllamaBackend[];
  let pool: BackendPool;
  let clock: number;

  const tags = () => doubles.map((d) => d.gets.get('/api/tags') ?? 0);

  beforeEach(async () => {
    doubles = await Promise.all([
      startOllamaDouble({ models: [{ name: 'llama3.2:latest', family: 'llama' }] }),
      startOllamaDouble({ models: [{ name: 'qwen3:8b', family: 'qwen3' }] }),
    ]);
    backends = doubles.map((d) => new OllamaBackend(d.url));
    clock = 1_000_000;
    pool = new BackendPool(backends, { modelTtlMs: 60_000, recheckMs: RECHECK_MS, now: () => clock });
  });

  afterEach(async () => {
    pool.close();
    await Promise.all(backends.map((b) => b.close()));
    await Promise.all(doubles.map((d) => d.close()));
  });

  test('20 requests in a row and 20 at once for a made-up model cost each host one /api/tags per interval', async () => {
    for (let i = 0; i < 20; i++) await expect(pool.acquire('made-up')).rejects.toMatchObject({ code: 'model_not_found' });
    // The first miss fetched the lists (they were unknown); being that fresh, they were not fetched again.
    expect(tags()).toEqual([1, 1]);

    clock += RECHECK_MS;
    const misses = await Promise.allSettled(Array.from({ length: 20 }, () => pool.acquire('made-up')));
    expect(misses.map((m) => m.status)).toEqual(Array(20).fill('rejected'));
    // Concurrent misses past the interval share one probe per host.
    expect(tags()).toEqual([2, 2]);

    clock += RECHECK_MS - 1;
    await expect(pool.hasModel('made-up')).resolves.toBe(false);
    expect(tags()).toEqual([2, 2]);
  });

  test('a model pulled a moment ago is found once the interval has passed', async () => {
    await expect(pool.acquire('phi4')).rejects.toMatchObject({ code: 'model_not_found' });
    doubles[1]!.models.push({ name: 'phi4:latest', family: 'phi3' });

    // Within the interval the lists are trusted: that is the price of not probing on every miss.
    clock += RECHECK_MS - 1;
    await expect(pool.hasModel('phi4')).resolves.toBe(false);

    clock += 1;
    const lease = await pool.acquire('phi4');
    expect(lease.backend).toBe(backends[1]);
    lease.release();
    expect(pool.status()[1]?.models).toEqual(['qwen3:8b', 'phi4:latest']);
    expect(tags()).toEqual([2, 2]);
  });

  test('a model some host lists costs no re-check', async () => {
    const lease = await pool.acquire('llama3.2');
    lease.release();
    clock += RECHECK_MS * 10;
    expect(await pool.hasModel('qwen3:8b')).toBe(true);
    expect(tags()).toEqual([1, 1]);
  });
});
