/**
 * Ollama's own 500 before the first token may be the host's fault or the request's (failures.ts,
 * `isAmbiguousFailure`). The pool's rules for it, at the unit level: the host is taken out only when
 * another host served the request, not for a failure from before it last changed state, and the
 * observer hears of every such failure (the only trace of a host that stays up while it fails).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { OllamaResponseError } from '../lib/backends/failures';
import { OllamaBackend } from '../lib/backends/ollama';
import { BackendPool } from '../lib/backends/pool';
import type { Backend, BackendModel } from '../lib/backends/types';
import { GatewayError } from '../lib/errors';
import { until } from './support/until';

jest.setTimeout(15_000);

const modelNamed = (name: string): BackendModel => ({ name, modifiedAt: new Date(0).toISOString() });

/** A host that only lists models; each test decides what its generations do through `dispatch`'s call. */
function host(url: string, models: string[]): Backend {
  return {
    url,
    chat: () => Promise.reject(new Error('not used: the test passes its own call')),
    embed: () => Promise.reject(new Error('not used: the test passes its own call')),
    listModels: async () => models.map(modelNamed),
    version: async () => '0.12.6',
  };
}

const ollama500 = (message = 'error parsing tool call: unexpected end of JSON input'): GatewayError =>
  new GatewayError('backend_error', `Ollama answered 500: ${message}`, { cause: new OllamaResponseError(message, 500, true) });

const signal = new AbortController().signal;

describe('an ambiguous 500 in the pool', () => {
  let pool: BackendPool;
  afterEach(() => pool.close());

  test('a failure from before the host was taken out and came back does not take it out again', async () => {
    const a = host('http://a', ['x:latest']);
    const b = host('http://b', ['x:latest']);
    const statesOfA: string[] = [];
    pool = new BackendPool([a, b], { modelTtlMs: 60_000, cooldownMs: 50, concurrency: 8, observer: { stateChanged: (url, state) => url === 'http://a' && statesOfA.push(state) } });
    await pool.hasModel('x');
    // Host b serves only when the test opens its gate, so both requests fail on a before either retry is served.
    const gates: Array<() => void> = [];
    const call = (backend: Backend) => (backend === a ? Promise.reject(ollama500()) : new Promise<string>((resolve) => gates.push(() => resolve('served'))));
    const first = pool.dispatch('x', { signal }, call);
    await until(() => gates.length === 1, 'the first request retried on b');
    const second = pool.dispatch('x', { signal }, call);
    await until(() => gates.length === 2, 'the second request retried on b');
    expect(pool.status()[0]?.state).toBe('up');

    (gates[0] as () => void)();
    (await first).lease.release();
    expect(pool.status()[0]?.state).toBe('cooling'); // b served what a failed: a's fault
    await until(() => pool.status()[0]?.state === 'up', 'a back after its cool-down and probe');

    (gates[1] as () => void)(); // the older failure's retry is served only now
    expect((await second).result).toBe('served');
    (await second).lease.release();
    expect(statesOfA).toEqual(['cooling', 'up']);
    expect(pool.status()[0]?.state).toBe('up');
  });

  test('the observer hears of each ambiguous failure, and whether it counted against the host', async () => {
    const a = host('http://a', ['x:latest']);
    const b = host('http://b', ['x:latest']);
    const heard: Array<[string, string, boolean]> = [];
    pool = new BackendPool([a, b], { modelTtlMs: 60_000, cooldownMs: 5_000, observer: { ambiguousFailure: (url, model, _error, counted) => heard.push([url, model, counted]) } });
    await pool.hasModel('x');

    // Fails on both: the request's fault, counted against neither.
    await expect(pool.dispatch('x', { signal }, () => Promise.reject(ollama500()))).rejects.toThrow(/error parsing tool call/);
    expect(heard.splice(0)).toEqual([
      ['http://a', 'x', false],
      ['http://b', 'x', false],
    ]);
    expect(pool.status().map((s) => s.state)).toEqual(['up', 'up']);

    // Fails on a, served by b: counted against a.
    const served = await pool.dispatch('x', { signal }, (backend) => (backend === a ? Promise.reject(ollama500('model failed to load')) : Promise.resolve('ok')));
    served.lease.release();
    expect(heard).toEqual([['http://a', 'x', true]]);
    expect(pool.status().map((s) => s.state)).toEqual(['cooling', 'up']);
  });
});

test("embeddings behind a proxy that answers an HTML 500: not Ollama's own, so the only host is taken out at once", async () => {
  const proxy = http.createServer((req, res) => {
    if (req.url === '/api/version') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"version":"0.12.6"}');
    if (req.url === '/api/tags') {
      const models = [{ name: 'nomic-embed-text:latest', model: 'nomic-embed-text:latest', modified_at: new Date(0).toISOString(), size: 1, digest: 'x', details: {} }];
      return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ models }));
    }
    req.resume();
    req.on('end', () => res.writeHead(500, { 'content-type': 'text/html' }).end('<html><body>500 Internal Server Error</body></html>'));
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const backend = new OllamaBackend(`http://127.0.0.1:${(proxy.address() as AddressInfo).port}`);
  const pool = new BackendPool([backend], { modelTtlMs: 60_000, cooldownMs: 5_000 });
  try {
    const failure = await pool.dispatch('nomic-embed-text', { signal }, (b) => b.embed('nomic-embed-text', ['hi'], signal)).catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(GatewayError);
    expect(failure).toMatchObject({ code: 'backend_error', message: expect.stringMatching(/500 Internal Server Error/) });
    expect(pool.status()[0]?.state).toBe('cooling');
  } finally {
    pool.close();
    await backend.close();
    await new Promise((resolve) => proxy.close(resolve));
  }
});

describe('the back-off of a host that fails again once it is back', () => {
  let pool: BackendPool;
  afterEach(() => pool.close());

  /** How long host a stays out each time: from `cooling` (or `down`) to `up`, in ms. */
  function outages(modelsOfA = ['x:latest']): { pool: BackendPool; a: Backend; b: Backend; times: number[] } {
    const a = host('http://a', modelsOfA);
    const b = host('http://b', ['x:latest']);
    const times: number[] = [];
    let since = 0;
    pool = new BackendPool([a, b], {
      modelTtlMs: 60_000,
      cooldownMs: 200,
      maxCooldownMs: 10_000,
      concurrency: 8,
      observer: {
        stateChanged: (url, state) => {
          if (url !== 'http://a') return;
          if (state === 'up') times.push(Date.now() - since);
          else since = Date.now();
        },
      },
    });
    return { pool, a, b, times };
  }

  test('a model that never loads there: each return that fails doubles the cool-down, though the probes pass', async () => {
    const { pool: p, a, times } = outages();
    await p.hasModel('x');
    // a's probes (version, model list) pass, but its generations fail; b serves them.
    const call = (backend: Backend) => (backend === a ? Promise.reject(ollama500('llama runner process has terminated')) : Promise.resolve('served'));
    for (let round = 1; round <= 3; round++) {
      (await p.dispatch('x', { signal }, call)).lease.release(); // a first (listed first), then b
      expect(p.status()[0]?.state).toBe('cooling');
      await until(() => p.status()[0]?.state === 'up', `a back, round ${round}`, 5_000);
    }
    // 200, 400, 800 ms: without the doubling each would be about 200.
    expect(times).toHaveLength(3);
    expect(times[0]).toBeLessThan(390);
    expect(times[1]).toBeGreaterThanOrEqual(390);
    expect(times[2]).toBeGreaterThanOrEqual(790);
  });

  test('serving another model there does not end it: the back-off is the failing model\'s', async () => {
    const { pool: p, a, times } = outages(['x:latest', 'embed:latest']);
    await p.hasModel('x');
    const call = (backend: Backend) => (backend === a ? Promise.reject(ollama500('llama runner process has terminated')) : Promise.resolve('served'));
    for (let round = 1; round <= 3; round++) {
      (await p.dispatch('x', { signal }, call)).lease.release();
      await until(() => p.status()[0]?.state === 'up', `a back, round ${round}`, 5_000);
      // a serves an embedding model fine in between.
      const embedded = await p.dispatch('embed', { signal }, (backend) => Promise.resolve(backend.url));
      expect(embedded.result).toBe('http://a');
      embedded.lease.release();
    }
    expect(times[1]).toBeGreaterThanOrEqual(390);
    expect(times[2]).toBeGreaterThanOrEqual(790);
  });

  test('a request served there ends the back-off', async () => {
    const { pool: p, a, times } = outages();
    await p.hasModel('x');
    let aFails = true;
    const call = (backend: Backend) => (backend === a && aFails ? Promise.reject(ollama500('llama runner process has terminated')) : Promise.resolve(backend.url));
    (await p.dispatch('x', { signal }, call)).lease.release();
    await until(() => p.status()[0]?.state === 'up', 'a back', 5_000);
    aFails = false;
    const served = await p.dispatch('x', { signal }, call);
    expect(served.result).toBe('http://a');
    served.lease.release();
    aFails = true;
    (await p.dispatch('x', { signal }, call)).lease.release();
    await until(() => p.status()[0]?.state === 'up', 'a back again', 5_000);
    expect(times).toHaveLength(2);
    expect(times[1]).toBeLessThan(390); // the base cool-down again, not its double
  });
});

describe('a host that was unreachable for a while', () => {
  let pool: BackendPool;
  afterEach(() => pool.close());

  test('once a probe finds it back, a later blip costs the base cool-down, not the outage\'s', async () => {
    let alive = true;
    const a: Backend = {
      ...host('http://a', ['x:latest']),
      listModels: async () => {
        if (!alive) throw new Error('connect ECONNREFUSED');
        return [modelNamed('x:latest')];
      },
      version: async () => {
        if (!alive) throw new Error('connect ECONNREFUSED');
        return '0.12.6';
      },
    };
    const unreachable = () => new GatewayError('backend_unavailable', 'Ollama at http://a is unreachable: connect ECONNREFUSED');
    pool = new BackendPool([a], { modelTtlMs: 600_000, cooldownMs: 50, maxCooldownMs: 3_000 });
    await pool.hasModel('x');
    // An outage over four failed probes (50 + 100 + 200 + 400 ms), then back, and nothing served.
    alive = false;
    await expect(pool.dispatch('x', { signal }, () => Promise.reject(unreachable()))).rejects.toMatchObject({ code: 'backend_unavailable' });
    await new Promise((resolve) => setTimeout(resolve, 700));
    alive = true;
    await until(() => pool.usable, 'back after the outage', 10_000);
    // A blip: one request finds it unreachable, and it is reachable again at once.
    const blipAt = Date.now();
    await expect(pool.dispatch('x', { signal }, () => Promise.reject(unreachable()))).rejects.toBeDefined();
    expect(pool.usable).toBe(false);
    await until(() => pool.usable, 'back after the blip', 10_000);
    expect(Date.now() - blipAt).toBeLessThan(300); // the base 50 ms, not 50 × 2⁴
  });
});

describe('failing models', () => {
  let pool: BackendPool;
  afterEach(() => pool.close());

  test('a model the host no longer lists is no longer listed as failing there', async () => {
    const listed = { a: ['x:latest'] };
    const a: Backend = { ...host('http://a', []), listModels: async () => listed.a.map(modelNamed) };
    const b = host('http://b', ['x:latest']);
    pool = new BackendPool([a, b], { modelTtlMs: 0, recheckMs: 0, cooldownMs: 100, concurrency: 8 });
    await pool.hasModel('x');
    await expect(pool.dispatch('x', { signal }, () => Promise.reject(ollama500()))).rejects.toBeDefined(); // fails on both
    expect(pool.status().map((h) => h.failingModels.map((f) => f.model))).toEqual([['x:latest'], ['x:latest']]);
    listed.a = []; // `ollama rm x` on a
    await pool.models(); // the lists refreshed
    expect(pool.status().map((h) => h.failingModels.map((f) => f.model))).toEqual([[], ['x:latest']]);
  });

  test('a failure is recorded when it happens: the host serving the model while the retry runs clears it', async () => {
    const a = host('http://a', ['x:latest']);
    const b = host('http://b', ['x:latest']);
    pool = new BackendPool([a, b], { modelTtlMs: 600_000, cooldownMs: 100, concurrency: 8 });
    await pool.hasModel('x');
    let serveOnB: () => void = () => undefined;
    const slowOnB = new Promise<string>((resolve) => (serveOnB = () => resolve('b')));
    // Request 1 fails on a at once; its retry on b is slow to its first token.
    const first = pool.dispatch('x', { signal }, (backend) => (backend === a ? Promise.reject(ollama500()) : slowOnB));
    await until(() => pool.status()[0]?.failingModels.length === 1, 'the failure on a recorded');
    // Request 2: a serves the model meanwhile.
    const second = await pool.dispatch('x', { signal }, (backend) => Promise.resolve(backend.url));
    expect(second.result).toBe('http://a');
    second.lease.release();
    serveOnB();
    (await first).lease.release();
    expect(pool.status()[0]?.failingModels).toEqual([]);
  });
});
