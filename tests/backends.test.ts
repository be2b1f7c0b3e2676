/**
 * Several Ollama hosts: routing by model, spreading load, retry before the first byte, a host going
 * down and coming back, /health and /ready.
 */
import { until } from './support/until';
import { startHarness, postJson, type Harness } from './support/harness';
import { startOllamaDouble, type Behaviour, type OllamaDouble } from './support/ollama-double';
import { sameModel } from '../lib/backends/pool';

jest.setTimeout(30_000);

const LLAMA_ONLY = [{ name: 'llama3.2:latest', family: 'llama' }];
const LLAMA_AND_QWEN = [
  { name: 'llama3.2:latest', family: 'llama' },
  { name: 'qwen3:8b', family: 'qwen3' },
];

interface HealthBody {
  status: string;
  backends: Array<{
    url: string;
    state: string;
    reachable: boolean;
    models: string[];
    in_flight: number;
    failing_models: Array<{ model: string; failures: number; last_failed_at: string }>;
  }>;
}

async function health(h: Harness): Promise<HealthBody> {
  return (await (await fetch(`${h.url}/health`)).json()) as HealthBody;
}

describe('several Ollama hosts', () => {
  let d1: OllamaDouble;
  let d2: OllamaDouble;
  let h: Harness;
  let auth: Record<string, string>;
  const chat = (body: Record<string, unknown>) => postJson(`${h.url}/api/chat.php`, body, auth);

  beforeEach(async () => {
    d1 = await startOllamaDouble({ models: LLAMA_ONLY });
    d2 = await startOllamaDouble({ models: LLAMA_AND_QWEN });
    h = await startHarness({ doubles: [d1, d2], env: { BACKEND_COOLDOWN_MS: '200' } });
    const key = h.createKey();
    auth = { 'X-Client-Key': key.clientKey, 'X-Client-Secret': key.clientSecret };
  });
  afterEach(async () => {
    await h.close();
    await Promise.all([d1.close(), d2.close()]);
  });

  test('a model only on host 2 goes to host 2', async () => {
    const res = await chat({ prompt: 'hi', model: 'covalid-2.0' });
    expect(res.status).toBe(200);
    expect(d1.generations()).toHaveLength(0);
    expect(d2.generations().map((g) => g.body?.model)).toEqual(['qwen3:8b']);
    // An Ollama model under its own name is found on host 2 as well.
    expect((await chat({ prompt: 'hi', model: 'qwen3:8b' })).status).toBe(200);
    expect(d1.generations()).toHaveLength(0);
    expect(d2.generations()).toHaveLength(2);
  });

  test('concurrent requests for a model both hosts have land on both', async () => {
    d1.options.firstTokenDelayMs = 300;
    d2.options.firstTokenDelayMs = 300;
    const results = await Promise.all([1, 2, 3, 4].map((i) => chat({ prompt: `spread ${i}` })));
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    expect(d1.generations().length).toBeGreaterThanOrEqual(1);
    expect(d2.generations().length).toBeGreaterThanOrEqual(1);
    expect(d1.generations().length + d2.generations().length).toBe(4);
  });

  test('a 500 before the first byte is retried once on the other host; the first cools down, then comes back', async () => {
    d1.queue.push({ kind: 'error-before', status: 500, message: 'llama-server process has terminated: exit status 2' });
    const res = await chat({ prompt: 'retry me' });
    expect(res.status).toBe(200);
    expect(res.body.response).toBe('Echo: retry me');
    expect(d1.generations()).toHaveLength(1);
    expect(d2.generations()).toHaveLength(1);
    const after = await health(h);
    expect(after.backends.map((b) => [b.url, b.state])).toEqual([
      [d1.url, 'cooling'],
      [d2.url, 'up'],
    ]);
    expect(after.backends.map((b) => b.failing_models.map((f) => [f.model, f.failures]))).toEqual([[['llama3.2:latest', 1]], []]);
    // The probe after the cool-down (200 ms here) finds it healthy again.
    let seen: unknown;
    await until(async () => {
      seen = (await health(h)).backends[0];
      return (seen as { state?: string } | undefined)?.state === 'up';
    }, 'host 1 back up', 10_000, () => JSON.stringify(seen));
    // Host 1 serves the next request (fewest in flight, listed first): the model works there again.
    expect((await chat({ prompt: 'again' })).status).toBe(200);
    expect(d1.generations()).toHaveLength(2);
    expect((await health(h)).backends[0]?.failing_models).toEqual([]);
  });

  test('an error line in place of the first token (Ollama before 0.12.6) fails that request only: no retry elsewhere, no host taken out', async () => {
    d1.options.errorLineBeforeFirstToken = true;
    d1.queue.push({ kind: 'error-mid', tokens: [], message: 'error parsing tool call: unexpected end of JSON input' });
    const res = await chat({ prompt: 'a prompt the model chokes on' });
    expect(res.status).toBe(502);
    expect(res.body.error).toMatch(/error parsing tool call/);
    expect([d1.generations().length, d2.generations().length]).toEqual([1, 0]);
    expect((await health(h)).backends.map((b) => b.state)).toEqual(['up', 'up']);
    expect((await fetch(`${h.url}/ready`)).status).toBe(200);
  });

  test("a prompt the model chokes on everywhere (Ollama's 500 at the first token): tried on the other host once, 502, no host taken out", async () => {
    const choke = (): Behaviour => ({ kind: 'error-mid', tokens: [], message: 'error parsing tool call: unexpected end of JSON input' });
    for (let i = 0; i < 3; i++) {
      d1.queue.push(choke());
      d2.queue.push(choke());
      const res = await chat({ prompt: `a prompt the model chokes on, try ${i}` });
      expect(res.status).toBe(502);
      expect(res.body.error).toMatch(/Ollama answered 500: error parsing tool call/);
      expect((await health(h)).backends.map((b) => [b.state, b.reachable])).toEqual([
        ['up', true],
        ['up', true],
      ]);
      expect((await fetch(`${h.url}/ready`)).status).toBe(200);
    }
    // Each request was asked of both hosts, once each: one retry, never more.
    expect([d1.generations().length, d2.generations().length]).toEqual([3, 3]);
    // Both still serve.
    const res = await chat({ prompt: 'fine now' });
    expect(res.status).toBe(200);
  });

  test("Ollama's 500 on the only host with the model: 502 in the route's format; the host stays up and /ready 200", async () => {
    const before = Date.now();
    for (let i = 0; i < 2; i++) {
      d2.queue.push({ kind: 'error-before', status: 500, message: 'llama runner process has terminated: exit status 2' });
      const res = await chat({ prompt: 'only host 2 has it', model: 'covalid-2.0' });
      expect(res.status).toBe(502);
      expect(res.body).toMatchObject({ error: expect.stringMatching(/llama runner process has terminated/) });
    }
    expect([d1.generations().length, d2.generations().length]).toEqual([0, 2]);
    const failing = await health(h);
    expect(failing.backends.map((b) => b.state)).toEqual(['up', 'up']);
    // The host stays up, and /health says which model it fails to run and how often (Ollama's words are
    // in the log only: /health answers anyone, and such a message may quote another user's generation).
    expect(failing.backends[0]?.failing_models).toEqual([]);
    expect(failing.backends[1]?.failing_models).toEqual([
      { model: 'qwen3:8b', failures: 2, last_failed_at: expect.any(String) },
    ]);
    const at = Date.parse(failing.backends[1]?.failing_models[0]?.last_failed_at ?? '');
    expect(at).toBeGreaterThanOrEqual(before - 1);
    expect(at).toBeLessThanOrEqual(Date.now());
    expect((await fetch(`${h.url}/ready`)).status).toBe(200);
    // Served there again: no longer listed.
    expect((await chat({ prompt: 'again', model: 'covalid-2.0' })).status).toBe(200);
    expect((await health(h)).backends[1]?.failing_models).toEqual([]);
  });

  test('a prompt that fails only sometimes (a tool call sampled differently) never takes the last healthy host out', async () => {
    const choke = (): Behaviour => ({ kind: 'error-mid', tokens: [], message: 'error parsing tool call: unexpected end of JSON input' });
    // Host 1 chokes and host 2 serves: host 1 looks at fault and cools down.
    d1.queue.push(choke());
    expect((await chat({ prompt: 'flaky tool call, try 1' })).status).toBe(200);
    expect((await health(h)).backends.map((b) => b.state)).toEqual(['cooling', 'up']);
    // Now host 2 chokes and host 1 serves: host 2 is the last healthy one and stays in.
    d2.queue.push(choke());
    expect((await chat({ prompt: 'flaky tool call, try 2' })).status).toBe(200);
    expect([d1.generations().length, d2.generations().length]).toEqual([2, 2]);
    expect((await health(h)).backends[1]?.state).toBe('up');
    expect((await fetch(`${h.url}/ready`)).status).toBe(200);
  });

  test('a burst of requests failed by a host before the retries succeed counts against it once: its cool-down is not stretched', async () => {
    // Host 2 is slow to its first token, so several requests reach host 1 (up, and failing fast)
    // before the first retry on host 2 is served; both serve several at once.
    const slow = await startOllamaDouble({ models: LLAMA_ONLY, firstTokenDelayMs: 300, parallel: 8 });
    const failing = await startOllamaDouble({ models: LLAMA_ONLY, parallel: 8 });
    const burst = await startHarness({ doubles: [failing, slow], env: { BACKEND_COOLDOWN_MS: '1000', BACKEND_CONCURRENCY: '8' } });
    try {
      const key = burst.createKey();
      const headers = { 'X-Client-Key': key.clientKey, 'X-Client-Secret': key.clientSecret };
      for (let i = 0; i < 6; i++) failing.queue.push({ kind: 'error-before', status: 500, message: 'llama runner process has terminated: exit status 2' });
      const results = await Promise.all(
        [0, 1, 2, 3, 4, 5].map(async (i) => {
          await new Promise((r) => setTimeout(r, i * 20));
          return postJson(`${burst.url}/api/chat.php`, { prompt: `burst ${i}` }, headers);
        }),
      );
      expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
      expect(failing.generations().length).toBeGreaterThan(1); // the case under test: several failed there
      expect((await health(burst)).backends[0]?.state).toBe('cooling');
      // Counted once: back after the first cool-down (1 s), where each failure counted would have
      // doubled it (32 s for six).
      await until(async () => (await health(burst)).backends[0]?.state === 'up', 'host 1 back after one cool-down', 5_000);
    } finally {
      await burst.close();
      await Promise.all([failing.close(), slow.close()]);
    }
  });

  test("Ollama's own 500 for embeddings on the only host: 502, the host stays up and /ready 200", async () => {
    const d3 = await startOllamaDouble();
    const single = await startHarness({ doubles: [d3] });
    try {
      single.store.setModel({ name: 'embed-small', ollamaModel: 'nomic-embed-text', category: 'embedding' });
      const key = single.createKey();
      d3.embedFailures.push({ status: 500, message: 'failed to load model' });
      const res = await postJson(`${single.url}/v1/embeddings`, { model: 'embed-small', input: 'hello' }, { Authorization: `Bearer ${key.apiKey}` });
      expect(res.status).toBe(502);
      expect(res.body).toMatchObject({ error: { message: expect.stringMatching(/failed to load model/) } });
      expect((await health(single)).backends[0]?.state).toBe('up');
      expect((await fetch(`${single.url}/ready`)).status).toBe(200);
      const again = await postJson(`${single.url}/v1/embeddings`, { model: 'embed-small', input: 'hello' }, { Authorization: `Bearer ${key.apiKey}` });
      expect(again.status).toBe(200);
    } finally {
      await single.close();
      await d3.close();
    }
  });

  test("an embedding runner's failure, which Ollama answers 400, is Ollama's failure: retried elsewhere, else 502; a too-long input stays the caller's 400", async () => {
    const d3 = await startOllamaDouble();
    const d4 = await startOllamaDouble();
    const pair = await startHarness({ doubles: [d3, d4] });
    const single = await startHarness({ doubles: [d4] });
    try {
      for (const g of [pair, single]) g.store.setModel({ name: 'embed-small', ollamaModel: 'nomic-embed-text', category: 'embedding' });
      const crash = { status: 400, message: 'do embedding request: Post "http://127.0.0.1:41093/embedding": EOF' };
      const embed = (g: Harness, key: ReturnType<Harness['createKey']>) =>
        postJson(`${g.url}/v1/embeddings`, { model: 'embed-small', input: 'hello' }, { Authorization: `Bearer ${key.apiKey}` });

      // Two hosts: the request that meets host 1's failure is served by host 2.
      d3.embedFailures.push(crash);
      const pairKey = pair.createKey();
      for (let i = 0; i < 4 && d3.embedFailures.length > 0; i++) expect((await embed(pair, pairKey)).status).toBe(200);
      expect(d3.embedFailures).toHaveLength(0); // the failure was met, and no caller saw it

      // One host: a 502 in OpenAI's shape, not a 400 blaming the caller.
      d4.embedFailures.length = 0;
      d4.embedFailures.push(crash);
      const singleKey = single.createKey();
      const failed = await embed(single, singleKey);
      expect(failed.status).toBe(502);
      expect(failed.body.error).toMatchObject({ type: 'server_error', message: expect.stringMatching(/do embedding request/) });

      d4.embedFailures.push({ status: 400, message: 'the input length exceeds the context length' });
      const tooLong = await embed(single, singleKey);
      expect(tooLong.status).toBe(400);
      expect(tooLong.body.error).toMatchObject({ type: 'invalid_request_error', message: expect.stringMatching(/context length/) });
    } finally {
      await Promise.all([pair.close(), single.close()]);
      await Promise.all([d3.close(), d4.close()]);
    }
  });

  test('a 500 that is not Ollama\'s own (a proxy in front of it) takes the host out at once', async () => {
    d1.queue.push({ kind: 'garbage', status: 500, body: '<html><body>500 Internal Server Error</body></html>', contentType: 'text/html' });
    const res = await chat({ prompt: 'via a proxy' });
    expect(res.status).toBe(200);
    expect(d2.generations()).toHaveLength(1);
    expect((await health(h)).backends[0]?.state).toBe('cooling');
  });

  test('an empty 200 from host 1 is a failure before the first token: retried on host 2', async () => {
    d1.queue.push({ kind: 'no-done', tokens: [] });
    const res = await chat({ prompt: 'nothing came back' });
    expect(res.status).toBe(200);
    expect(res.body.response).toBe('Echo: nothing came back');
    expect([d1.generations().length, d2.generations().length]).toEqual([1, 1]);
  });

  test('503 busy on host 1 is retried on host 2 without taking host 1 out', async () => {
    d1.queue.push({ kind: 'error-before', status: 503, message: 'server busy, please try again.  maximum pending requests exceeded' });
    const res = await chat({ prompt: 'busy' });
    expect(res.status).toBe(200);
    expect(d2.generations()).toHaveLength(1);
    expect((await health(h)).backends[0]?.state).toBe('up');
  });

  test('both hosts failing before the first byte: the second failure is the answer (one retry only)', async () => {
    d1.queue.push({ kind: 'error-before', status: 503, message: 'server busy' });
    d2.queue.push({ kind: 'error-before', status: 503, message: 'server busy' });
    const res = await chat({ prompt: 'x' });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(d1.generations().length + d2.generations().length).toBe(2);
  });

  test('a host that lost the model (404) is refreshed and the request served by the other', async () => {
    await chat({ prompt: 'warm' }); // both lists known
    d1.models = [];
    d1.requests.length = 0;
    d2.requests.length = 0;
    const res = await chat({ prompt: 'where is it' });
    expect(res.status).toBe(200);
    expect(d2.generations()).toHaveLength(1);
    expect(d1.generations()).toHaveLength(1); // answered 404
    // Its list was fetched again on the 404: the model is gone from it, and the host is not taken out.
    expect((await health(h)).backends[0]).toMatchObject({ models: [], state: 'up' });
  });

  test('a client looping on a made-up model does not probe every host on every request', async () => {
    await chat({ prompt: 'warm' }); // both lists known
    for (const d of [d1, d2]) d.gets.clear();
    const started = Date.now();
    for (let i = 0; i < 20; i++) {
      const res = await chat({ prompt: 'hi', model: 'no-such-model' });
      expect(res.status).toBe(404);
      expect(res.body.error).toContain("'no-such-model'");
    }
    // One re-check per host per 2 s (the pool's default) at most; before, it was one per request.
    const bound = Math.floor((Date.now() - started) / 2_000) + 1;
    for (const d of [d1, d2]) expect(d.gets.get('/api/tags') ?? 0).toBeLessThanOrEqual(bound);
    expect(d1.generations().length + d2.generations().length).toBe(1);
  });

  test('a host that goes away is skipped (retry on the other), and is used again once it is back', async () => {
    await chat({ prompt: 'warm' });
    const port = Number(new URL(d1.url).port);
    await d1.close();
    const res = await chat({ prompt: 'while down' });
    expect(res.status).toBe(200);
    expect(res.body.response).toBe('Echo: while down');
    let body = await health(h);
    expect(body.backends[0]).toMatchObject({ url: d1.url, state: 'down', reachable: false, models: ['llama3.2:latest'] });
    expect(body.backends[1]).toMatchObject({ url: d2.url, state: 'up', reachable: true });
    expect((await fetch(`${h.url}/ready`)).status).toBe(200);

    const served = d2.generations().length;
    expect((await chat({ prompt: 'still down' })).status).toBe(200);
    expect(d2.generations()).toHaveLength(served + 1);

    d1 = await startOllamaDouble({ models: LLAMA_ONLY, port });
    let seen: unknown;
    await until(async () => {
      seen = (await health(h)).backends[0];
      return (seen as { state?: string } | undefined)?.state === 'up';
    }, 'host 1 back up', 10_000, () => JSON.stringify(seen));
    body = await health(h);
    expect(body.backends[0]).toMatchObject({ state: 'up', reachable: true, in_flight: 0 });
    expect((await chat({ prompt: 'back' })).status).toBe(200);
    expect(d1.generations().map((g) => g.body?.prompt)).toEqual(['back']);
  });

  test('/ready is 503 while no host is usable, 200 once one is', async () => {
    expect((await fetch(`${h.url}/ready`)).status).toBe(200);
    const port = Number(new URL(d1.url).port);
    const port2 = Number(new URL(d2.url).port);
    await Promise.all([d1.close(), d2.close()]);
    const res = await chat({ prompt: 'nobody home' });
    expect(res.status).toBe(502);
    const ready = await fetch(`${h.url}/ready`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({ ready: false });
    expect((await health(h)).status).toBe('degraded');
    d1 = await startOllamaDouble({ models: LLAMA_ONLY, port });
    d2 = await startOllamaDouble({ models: LLAMA_AND_QWEN, port: port2 });
    await until(async () => (await fetch(`${h.url}/ready`)).status === 200, '/ready back to 200');
  });
});

describe('sameModel: the names Ollama takes for a model it lists', () => {
  test.each([
    ['llama3.2:latest', 'llama3.2', true],
    ['llama3.2:latest', 'Llama3.2', true],
    ['hf.co/User/Model:Q4_K_M', 'hf.co/user/model:q4_k_m', true],
    ['localhost:5000/team/m:latest', 'localhost:5000/team/m', true], // that colon is a port, not a tag
    ['llama3.2:1b', 'llama3.2', false],
    ['llama3.2:latest', 'llama3', false],
    ['llama3.2:latest', 'llama3.2:1b', false],
  ])('listed %j, asked %j: %j', (listed, asked, same) => {
    expect(sameModel(listed, asked)).toBe(same);
  });
});
