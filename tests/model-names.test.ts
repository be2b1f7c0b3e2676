/**
 * Ollama takes a model's name in any case, and without `:latest`; the gateway does too, but keeps one
 * name per model: the one a host lists it under. So spellings neither split usage and metrics nor
 * get round an alias that prices a model under its own Ollama name.
 */
import { OllamaResponseError } from '../lib/backends/failures';
import { BackendPool } from '../lib/backends/pool';
import type { Backend } from '../lib/backends/types';
import { GatewayError } from '../lib/errors';
import { startHarness, postJson, type Harness } from './support/harness';
import { startOllamaDouble } from './support/ollama-double';

jest.setTimeout(30_000);

describe('model names in any spelling', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(() => h.close());

  const ask = (key: ReturnType<Harness['createKey']>, model: string) =>
    postJson(`${h.url}/v1/chat/completions`, { model, messages: [{ role: 'user', content: 'hi' }] }, { Authorization: `Bearer ${key.apiKey}` });

  test("five spellings of one Ollama model: one usage model and one metrics series but for `:latest`; the reply echoes what was asked", async () => {
    const key = h.createKey('spellings');
    const spellings = ['llama3.2', 'Llama3.2', 'LLAMA3.2', 'lLaMa3.2', 'LLAMA3.2:LATEST'];
    for (const model of spellings) {
      const res = await ask(key, model);
      expect(res.status).toBe(200);
      expect(res.body.model).toBe(model);
    }
    h.store.flush();
    const rows = h.store.db.prepare('SELECT model, COUNT(*) AS n FROM usage WHERE org_id = ? GROUP BY model').all(key.org.id);
    // The host's spelling; with or without `:latest` as the caller wrote it.
    expect(rows).toEqual([
      { model: 'llama3.2', n: 4 },
      { model: 'llama3.2:latest', n: 1 },
    ]);
    const text = await (await fetch(`${h.url}/metrics`)).text();
    const series = text.split('\n').filter((line) => line.startsWith('gateway_requests_total{route="openai.chat",status="200"') && /llama3\.2/i.test(line));
    expect(series.map((line) => /model="([^"]*)"/.exec(line)?.[1])).toEqual(['llama3.2', 'llama3.2:latest']);
    const firstToken = text.split('\n').filter((line) => line.startsWith('gateway_time_to_first_token_seconds_count{model="') && /llama3\.2/i.test(line));
    expect(firstToken.map((line) => /model="([^"]*)"/.exec(line)?.[1])).toEqual(['llama3.2', 'llama3.2:latest']);
  });

  test('an alias that prices an Ollama model under its own name applies to every spelling of it', async () => {
    h.store.setModel({ name: 'qwen3:8b', ollamaModel: 'qwen3:8b', inputMicroPer1k: 1_000_000, outputMicroPer1k: 1_000_000 });
    h.store.setModel({ name: 'llama-guard3', ollamaModel: 'llama-guard3', inputMicroPer1k: 1_000_000, outputMicroPer1k: 1_000_000 });
    const key = h.createKey('payer', 100);
    const balance = () => {
      h.store.flush();
      return h.store.getOrg(key.org.id)?.balanceMicro as number;
    };
    let before = balance();
    for (const model of ['qwen3:8b', 'QWEN3:8B', 'Qwen3:8b', 'LLAMA-GUARD3', 'llama-guard3:latest']) {
      const res = await ask(key, model);
      expect(res.status).toBe(200);
      const after = balance();
      expect({ model, charged: after < before }).toEqual({ model, charged: true });
      before = after;
    }
  });
});

describe('priced aliases and listings, whatever the spelling (review)', () => {
  const ask = (g: Harness, key: { apiKey: string }, model: string) =>
    postJson(`${g.url}/v1/chat/completions`, { model, messages: [{ role: 'user', content: 'hi' }] }, { Authorization: `Bearer ${key.apiKey}` });
  const balance = (g: Harness, orgId: string) => {
    g.store.flush();
    return g.store.getOrg(orgId)?.balanceMicro as number;
  };

  test('two hosts listing one model in different cases: the priced alias applies, whichever host is asked first', async () => {
    const a = await startOllamaDouble({ models: [{ name: 'Qwen3:8b', family: 'qwen3' }] });
    const b = await startOllamaDouble({ models: [{ name: 'qwen3:8b', family: 'qwen3' }] });
    const g = await startHarness({ doubles: [a, b] });
    try {
      g.store.setModel({ name: 'qwen3:8b', ollamaModel: 'qwen3:8b', inputMicroPer1k: 1_000_000, outputMicroPer1k: 1_000_000 });
      const key = g.createKey('two-hosts', 100);
      const before = balance(g, key.org.id);
      expect((await ask(g, key, 'QWEN3:8B')).status).toBe(200);
      expect(balance(g, key.org.id)).toBeLessThan(before);
    } finally {
      await g.close();
      await Promise.all([a.close(), b.close()]);
    }
  });

  test('two hosts listing one model in different cases: listed once, in the first host\'s spelling', async () => {
    const a = await startOllamaDouble({ models: [{ name: 'Qwen3:8b', family: 'qwen3' }, { name: 'phi4:latest', family: 'phi3' }] });
    const b = await startOllamaDouble({ models: [{ name: 'qwen3:8b', family: 'qwen3' }, { name: 'PHI4:latest', family: 'phi3' }] });
    const g = await startHarness({ doubles: [a, b] });
    try {
      const key = g.createKey('lister');
      const res = await fetch(`${g.url}/v1/models`, { headers: { Authorization: `Bearer ${key.apiKey}` } });
      expect(res.status).toBe(200);
      const ids = ((await res.json()) as { data: Array<{ id: string }> }).data.map((m) => m.id);
      expect(ids.filter((id) => /^qwen3:8b$/i.test(id))).toEqual(['Qwen3:8b']);
      expect(ids.filter((id) => /^phi4(:latest)?$/i.test(id))).toEqual(['phi4:latest']);
      const ainow = (await (await fetch(`${g.url}/models`, { headers: { Authorization: `Bearer ${key.apiKey}` } })).json()) as { data: Array<{ id: string }> };
      expect(ainow.data.filter((m) => /^qwen3:8b$/i.test(m.id)).map((m) => m.id)).toEqual(['Qwen3:8b']);
    } finally {
      await g.close();
      await Promise.all([a.close(), b.close()]);
    }
  });

  test("an alias whose name differs from its model's only in case prices every spelling", async () => {
    const g = await startHarness();
    try {
      g.store.setModel({ name: 'Llama3.2', ollamaModel: 'llama3.2', inputMicroPer1k: 1_000_000, outputMicroPer1k: 1_000_000 });
      const key = g.createKey('case-alias', 100);
      const before = balance(g, key.org.id);
      expect((await ask(g, key, 'llama3.2')).status).toBe(200);
      expect(balance(g, key.org.id)).toBeLessThan(before);
    } finally {
      await g.close();
    }
  });

  test('an alias that only shares a name does not capture the Ollama model (nor its allow-list)', async () => {
    const g = await startHarness();
    try {
      g.store.setModel({ name: 'llama3.2', ollamaModel: 'qwen3:8b', inputMicroPer1k: 1_000_000, outputMicroPer1k: 1_000_000 });
      const key = g.createKey('allow', 100);
      g.store.setKeyLimits(key.clientKey, { allowedModels: ['llama3.2:latest'] });
      expect((await ask(g, key, 'llama3.2')).status).toBe(403); // the alias: not allowed
      const own = await ask(g, key, 'llama3.2:latest'); // Ollama's own llama3.2, allowed and free
      expect(own.status).toBe(200);
      expect(g.double.generations().at(-1)?.body?.model).toBe('llama3.2:latest');
    } finally {
      await g.close();
    }
  });

  test("a key's allow-list names Ollama's models in any spelling, as Ollama does", async () => {
    const g = await startHarness();
    try {
      const untagged = g.createKey('untagged', 100);
      g.store.setKeyLimits(untagged.clientKey, { allowedModels: ['llama3.2'] });
      const tagged = g.createKey('tagged', 100);
      g.store.setKeyLimits(tagged.clientKey, { allowedModels: ['llama3.2:latest'] });
      // Ollama is asked for the host's spelling, with or without `:latest` as the caller wrote it.
      for (const [key, model, sent] of [
        [untagged, 'Llama3.2', 'llama3.2'],
        [untagged, 'LLAMA3.2:latest', 'llama3.2:latest'],
        [tagged, 'LLAMA3.2', 'llama3.2'],
        [tagged, 'llama3.2', 'llama3.2'],
      ] as const) {
        const before = g.double.generations().length;
        const res = await ask(g, key, model);
        expect(res.status).toBe(200);
        expect(g.double.generations().length).toBe(before + 1);
        expect(g.double.generations().at(-1)?.body?.model).toBe(sent);
      }
      const embedder = g.createKey('embedder', 100);
      g.store.setKeyLimits(embedder.clientKey, { allowedModels: ['nomic-embed-text'] });
      const embedded = await postJson(`${g.url}/v1/embeddings`, { model: 'Nomic-Embed-Text', input: 'hi' }, { Authorization: `Bearer ${embedder.apiKey}` });
      expect(embedded.status).toBe(200);
      expect(embedded.body.data[0].embedding.length).toBeGreaterThan(0);
      // Another model stays refused, before anything is asked of Ollama.
      const before = g.double.generations().length;
      const refused = await ask(g, untagged, 'Qwen3:8b');
      expect(refused.status).toBe(403);
      expect(refused.body.error.message).toBe("This key may not use the model 'Qwen3:8b'.");
      expect(g.double.generations().length).toBe(before);
    } finally {
      await g.close();
    }
  });

  test('an alias on an allow-list is that alias as written: another spelling, which is Ollama\'s model of that name, is refused', async () => {
    const g = await startHarness();
    try {
      g.store.setModel({ name: 'llama3.2', ollamaModel: 'qwen3:8b', inputMicroPer1k: 1_000_000, outputMicroPer1k: 1_000_000 });
      const key = g.createKey('alias-only', 100);
      g.store.setKeyLimits(key.clientKey, { allowedModels: ['llama3.2'] });
      const alias = await ask(g, key, 'llama3.2');
      expect(alias.status).toBe(200);
      expect(g.double.generations().at(-1)?.body?.model).toBe('qwen3:8b');
      const before = g.double.generations().length;
      for (const model of ['Llama3.2', 'llama3.2:latest', 'LLAMA3.2:LATEST']) {
        const res = await ask(g, key, model);
        expect(res.status).toBe(403);
        expect(res.body.error.message).toBe(`This key may not use the model '${model}'.`);
      }
      expect(g.double.generations().length).toBe(before);
    } finally {
      await g.close();
    }
  });

  test('aliases on an allow-list no other spelling can reach are refused before the name is looked up (review)', async () => {
    const g = await startHarness();
    try {
      g.store.setModel({ name: 'mine', ollamaModel: 'qwen3:8b', inputMicroPer1k: 1_000_000, outputMicroPer1k: 1_000_000 });
      g.store.setModel({ name: 'llama3.2', ollamaModel: 'qwen3:8b', inputMicroPer1k: 1_000_000, outputMicroPer1k: 1_000_000 });
      const key = g.createKey('aliases', 100);
      g.store.setKeyLimits(key.clientKey, { allowedModels: ['mine', 'llama3.2'] });
      // 'MINE' is no model at all and 'LLAMA3.2' is Ollama's: the same refusal tells the key nothing.
      for (const model of ['MINE', 'LLAMA3.2']) {
        const res = await ask(g, key, model);
        expect(res.status).toBe(403);
        expect(res.body.error.message).toBe(`This key may not use the model '${model}'.`);
      }
      expect(g.double.generations()).toHaveLength(0);
    } finally {
      await g.close();
    }
  });

  test("an Ollama name on an allow-list allows that model in any spelling when an alias prices it under its own name (review)", async () => {
    const g = await startHarness();
    try {
      const balanceAfter = async (key: ReturnType<Harness['createKey']>, model: string) => {
        const res = await ask(g, key, model);
        expect(res.status).toBe(200);
        expect(g.double.generations().at(-1)?.body?.model).toBe('qwen3:8b');
        return balance(g, key.org.id);
      };
      g.store.setModel({ name: 'QWEN3:8B', ollamaModel: 'qwen3:8b', inputMicroPer1k: 1_000_000, outputMicroPer1k: 1_000_000 });
      const key = g.createKey('ollama-name', 100);
      g.store.setKeyLimits(key.clientKey, { allowedModels: ['qwen3:8b'] });
      let before = balance(g, key.org.id);
      for (const model of ['qwen3:8b', 'Qwen3:8b', 'QWEN3:8B']) {
        const after = await balanceAfter(key, model);
        expect(after).toBeLessThan(before); // priced through the alias, whichever spelling
        before = after;
      }
      // The alias's own name on a list: reached by the spellings of the model it prices.
      const aliasKey = g.createKey('alias-name', 100);
      g.store.setKeyLimits(aliasKey.clientKey, { allowedModels: ['QWEN3:8B'] });
      before = balance(g, aliasKey.org.id);
      expect(await balanceAfter(aliasKey, 'qwen3:8b')).toBeLessThan(before);
    } finally {
      await g.close();
    }
  });

  test('listings show a key with an allow-list the models it may use, in every API shape', async () => {
    const g = await startHarness();
    try {
      g.store.setModel({ name: 'cheap', ollamaModel: 'llama3.2', inputMicroPer1k: 1_000, outputMicroPer1k: 1_000 });
      const key = g.createKey('listed', 100);
      g.store.setKeyLimits(key.clientKey, { allowedModels: ['cheap', 'Qwen3:8b'] });
      const auth = { Authorization: `Bearer ${key.apiKey}` };
      const ids = async (path: string) => {
        const res = await fetch(`${g.url}${path}`, { headers: auth });
        expect(res.status).toBe(200);
        const body = (await res.json()) as { data: Array<{ id: string }> | { data: Array<{ id: string }> } };
        const list = Array.isArray(body.data) ? body.data : body.data.data;
        return list.map((m) => m.id).sort();
      };
      expect(await ids('/v1/models')).toEqual(['cheap', 'qwen3:8b']);
      expect(await ids('/models')).toEqual(['cheap', 'qwen3:8b']);
      expect(await ids('/api/v1/models')).toEqual(['cheap', 'qwen3:8b']);
      expect((await fetch(`${g.url}/v1/models/qwen3:8b`, { headers: auth })).status).toBe(200);
      const hidden = await fetch(`${g.url}/v1/models/llama3.2:latest`, { headers: auth });
      expect(hidden.status).toBe(404);
      // What is listed can be used.
      for (const model of ['cheap', 'qwen3:8b']) expect((await ask(g, key, model)).status).toBe(200);
      // Counting tokens for a model takes the same list.
      const count = (model: string) => postJson(`${g.url}/tokens`, { text: 'hello there', model }, auth);
      expect((await count('cheap')).status).toBe(200);
      expect((await count('QWEN3:8B')).status).toBe(200);
      const refused = await count('llama3.2');
      expect(refused.status).toBe(403);
      expect(JSON.stringify(refused.body)).toContain("This key may not use the model 'llama3.2'.");
      // A key without a list sees every model.
      const open = g.createKey('open', 100);
      const all = await fetch(`${g.url}/v1/models`, { headers: { Authorization: `Bearer ${open.apiKey}` } });
      const every = ((await all.json()) as { data: Array<{ id: string }> }).data.map((m) => m.id);
      expect(every).toEqual(expect.arrayContaining(['cheap', 'qwen3:8b', 'llama3.2:latest', 'nomic-embed-text:latest']));
    } finally {
      await g.close();
    }
  });

  test('ai-now /models does not list a model as free under a name it is billed at', async () => {
    const g = await startHarness();
    try {
      g.store.setModel({ name: 'llama-guard3', ollamaModel: 'llama-guard3', inputMicroPer1k: 1_000_000, outputMicroPer1k: 1_000_000 });
      const key = g.createKey('lister', 100);
      const list = (await (await fetch(`${g.url}/models`, { headers: { Authorization: `Bearer ${key.apiKey}` } })).json()) as { data: Array<{ id: string; inputCost: number }> };
      expect(list.data.find((m) => m.id === 'llama-guard3:latest')).toBeUndefined();
      expect(list.data.find((m) => m.id === 'llama-guard3')?.inputCost).toBeGreaterThan(0);
      expect(list.data.find((m) => m.id === 'llama3.2:latest')?.inputCost).toBe(0); // an unpriced Ollama model is still listed
    } finally {
      await g.close();
    }
  });
});

describe('failing_models on /health', () => {
  test('names the model as the host lists it, whatever spelling failed', async () => {
    const listed = 'hf.co/Qwen/Qwen3-GGUF:Q4_K_M';
    const host: Backend = {
      url: 'http://a',
      chat: () => Promise.reject(new Error('not called')),
      embed: () => Promise.reject(new Error('not called')),
      listModels: async () => [{ name: listed, modifiedAt: new Date(0).toISOString() }],
      version: async () => '0.12.6',
    };
    const pool = new BackendPool([host], { modelTtlMs: 60_000 });
    try {
      const fail = () => Promise.reject(new GatewayError('backend_error', 'Ollama answered 500: boom', { cause: new OllamaResponseError('boom', 500, true) }));
      await expect(pool.dispatch('HF.CO/qwen/qwen3-gguf:q4_k_m', {}, fail)).rejects.toThrow();
      expect(pool.status()[0]?.failingModels.map((f) => f.model)).toEqual([listed]);
    } finally {
      pool.close();
    }
  });
});
