/**
 * The pool's cool-down probes, driven directly: a host taken out must come back by its probe timer
 * alone (no request, no /ready poll to nudge it), whatever the wall clock says when the timer fires.
 */
import { BackendPool } from '../lib/backends/pool';
import { OllamaBackend } from '../lib/backends/ollama';
import { startOllamaDouble, type OllamaDouble } from './support/ollama-double';
import { until } from './support/until';

jest.setTimeout(15_000);

describe('cool-down probes', () => {
  let double: OllamaDouble;
  let backend: OllamaBackend;
  let pool: BackendPool;

  afterEach(async () => {
    pool.close();
    await backend.close();
    await double.close();
  });

  test('a host comes back through its probe timer even when the timer fires before now() reaches the cool-down end', async () => {
    double = await startOllamaDouble({ models: [{ name: 'llama3.2:latest', family: 'llama' }] });
    const port = Number(new URL(double.url).port);
    backend = new OllamaBackend(double.url);
    // A clock that never moves: as seen by now(), every cool-down is always still running, which is
    // the extreme of a timer firing a millisecond early on the loop's cached time.
    const frozen = Date.now();
    const states: string[] = [];
    pool = new BackendPool([backend], {
      modelTtlMs: 60_000,
      cooldownMs: 50,
      now: () => frozen,
      observer: { stateChanged: (_url, state) => states.push(state) },
    });
    expect(await pool.hasModel('llama3.2')).toBe(true);

    await double.close();
    const signal = new AbortController().signal;
    await expect(
      pool.dispatch('llama3.2', { signal }, (b) => b.chat({ model: 'llama3.2', input: { kind: 'prompt', prompt: 'x' }, options: {}, signal })),
    ).rejects.toMatchObject({ code: 'backend_unavailable' });
    expect(pool.status()[0]?.state).toBe('down');

    double = await startOllamaDouble({ models: [{ name: 'llama3.2:latest', family: 'llama' }], port });
    await until(() => pool.status()[0]?.state === 'up', 'the probe timer to bring the host back', 5_000, () => JSON.stringify(pool.status()[0]));
    expect(states).toEqual(['down', 'up']);
    expect(pool.status()[0]).toMatchObject({ reachable: true, error: null, models: ['llama3.2:latest'] });
  });
});
