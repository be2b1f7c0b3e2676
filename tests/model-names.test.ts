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
