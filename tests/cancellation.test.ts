/**
 * A client that leaves aborts the Ollama request at once (seen on the double's side), and is billed for
 * what was relayed and nothing else; Ollama dying mid-answer is a 502 billed the same way.
 */
import { until } from './support/until';
import { startHarness, type Harness } from './support/harness';
import { tokenize } from './support/ollama-double';
import { countTokens } from '../lib/tokens';

const TOOLS = [
  {
    type: 'function',
    function: { name: 'get_weather', description: 'The weather in a city', parameters: { type: 'object', properties: { city: { type: 'string' } } } },
  },
];

jest.setTimeout(30_000);

interface UsageRow {
  status: number;
  error_code: string | null;
  prompt_tokens: number;
  completion_tokens: number;
  cost_micro: number;
}

describe('cancellation and partial billing', () => {
  let h: Harness;
  let auth: Record<string, string>;
  let orgId: string;
  let apiKey: string;
  const usage = (requestId: string) => h.store.db.prepare('SELECT status, error_code, prompt_tokens, completion_tokens, cost_micro FROM usage WHERE request_id = ?').get(requestId) as UsageRow | undefined;
  /** Sends a Covalid request and aborts it once `when()` holds. */
  async function leaveWhen(requestId: string, when: () => boolean): Promise<void> {
    const controller = new AbortController();
    const res = fetch(`${h.url}/api/chat.php`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Request-Id': requestId, ...auth },
      body: JSON.stringify({ prompt: 'tell me a long story', model: 'priced' }),
      signal: controller.signal,
    });
    await until(when, 'the moment to leave');
    controller.abort();
    await expect(res).rejects.toThrow();
  }

  beforeEach(async () => {
    h = await startHarness();
    // 1 credit per 1,000 tokens each way, so partial bills are visible.
    h.store.setModel({ name: 'priced', ollamaModel: 'llama3.2', inputMicroPer1k: 1_000_000, outputMicroPer1k: 1_000_000 });
    const key = h.createKey('leaver', 100);
    auth = { 'X-Client-Key': key.clientKey, 'X-Client-Secret': key.clientSecret };
    orgId = key.org.id;
    apiKey = key.apiKey;
  });
  afterEach(() => h.close());

  test('leaving while Ollama loads the model (before its first line) aborts it; nothing is billed', async () => {
    h.double.options.firstTokenDelayMs = 5_000;
    await leaveWhen('cancel-before-first-0001', () => h.double.generations().length === 1);
    await until(() => h.double.generations()[0]?.aborted === true, 'the double to see the abort');
    expect(h.double.generations()[0]?.linesSent).toBe(0);
    await until(() => usage('cancel-before-first-0001') !== undefined, 'the usage row');
    expect(usage('cancel-before-first-0001')).toEqual({ status: 499, error_code: 'client_closed', prompt_tokens: 0, completion_tokens: 0, cost_micro: 0 });
    expect(h.store.getOrg(orgId)?.balanceMicro).toBe(100_000_000); // the reservation was released in full
  });

  test('leaving while Ollama hangs aborts it at once', async () => {
    h.double.queue.push({ kind: 'hang' });
    await leaveWhen('cancel-hang-00001', () => h.double.generations().length === 1);
    await until(() => h.double.generations()[0]?.aborted === true, 'the double to see the abort');
    await until(() => usage('cancel-hang-00001') !== undefined, 'the usage row');
    expect(usage('cancel-hang-00001')).toMatchObject({ status: 499, completion_tokens: 0, cost_micro: 0 });
  });

  test('leaving mid-answer aborts Ollama and bills the tokens relayed so far, not the rest', async () => {
    const tokens = Array.from({ length: 200 }, (_, i) => ` word${i}`);
    h.double.queue.push({ kind: 'reply', tokens });
    h.double.options.tokenDelayMs = 20;
    await leaveWhen('cancel-mid-000001', () => (h.double.generations()[0]?.linesSent ?? 0) >= 5);
    await until(() => h.double.generations()[0]?.aborted === true, 'the double to see the abort');
    const sent = h.double.generations()[0]?.linesSent ?? 0;
    expect(sent).toBeLessThan(tokens.length);
    await until(() => usage('cancel-mid-000001') !== undefined, 'the usage row');
    const row = usage('cancel-mid-000001') as UsageRow;
    expect(row.status).toBe(499);
    expect(row.error_code).toBe('client_closed');
    // What reached the gateway: at least one token, at most what the double wrote.
    expect(row.completion_tokens).toBeGreaterThan(0);
    expect(row.completion_tokens).toBeLessThanOrEqual(sent * 2); // tiktoken may split " wordN" in two
    expect(row.prompt_tokens).toBeGreaterThan(0);
    expect(row.cost_micro).toBeGreaterThan(0);
    expect(h.store.getOrg(orgId)?.balanceMicro).toBe(100_000_000 - row.cost_micro);
  });

  test('Ollama dying mid-answer: 502, nothing hangs, the tokens relayed are billed', async () => {
    h.double.queue.push({ kind: 'die-mid', tokens: ['Hello', ' there', ' friend'] });
    h.double.options.tokenDelayMs = 20; // so the lines leave before the socket is destroyed
    const res = await fetch(`${h.url}/api/chat.php`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Request-Id': 'die-mid-00000001', ...auth },
      body: JSON.stringify({ prompt: 'hi', model: 'priced' }),
    });
    expect(res.status).toBe(502);
    expect(((await res.json()) as { error: string }).error).toMatch(/mid-answer/);
    const row = usage('die-mid-00000001') as UsageRow;
    expect(row).toMatchObject({ status: 502, error_code: 'backend_error', completion_tokens: tokenize('Hello there friend').length });
    expect(row.cost_micro).toBeGreaterThan(0);
  });

  /** A streamed /v1 request with tools; returns the SSE text read until `until` shows in it (then aborts), or all of it. */
  async function toolStream(requestId: string, leaveOnceSeen?: string): Promise<string> {
    const controller = new AbortController();
    const res = await fetch(`${h.url}/v1/chat/completions`, {
      method: 'POST',
      signal: controller.signal,
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${apiKey}`, 'X-Request-Id': requestId },
      body: JSON.stringify({ model: 'priced', stream: true, tools: TOOLS, messages: [{ role: 'user', content: 'the weather in Paris and Rome, for my trip next week' }] }),
    });
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let text = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return text;
      text += decoder.decode(value, { stream: true });
      if (leaveOnceSeen && text.includes(leaveOnceSeen)) {
        controller.abort();
        return text;
      }
    }
  }

  test('leaving once a tool call was relayed bills the call and the prompt that produced it', async () => {
    h.double.options.tokenDelayMs = 1_000; // the final line comes long after the tool call
    h.double.queue.push({ kind: 'reply', tokens: [], toolCalls: [{ name: 'get_weather', arguments: { city: 'Paris' } }] });
    const text = await toolStream('tool-left-000001', '"get_weather"');
    expect(text).toContain('"tool_calls"');
    await until(() => usage('tool-left-000001') !== undefined, 'the usage row');
    const row = usage('tool-left-000001') as UsageRow;
    expect(row).toMatchObject({ status: 499, error_code: 'client_closed' });
    // The call as generated text (name and arguments), and the prompt with the tool definitions.
    expect(row.completion_tokens).toBe(countTokens(`get_weather${JSON.stringify({ city: 'Paris' })}`));
    expect(row.prompt_tokens).toBeGreaterThan(countTokens(JSON.stringify([{ name: 'get_weather' }])));
    expect(row.cost_micro).toBeGreaterThan(0);
    expect(h.store.getOrg(orgId)?.balanceMicro).toBe(100_000_000 - row.cost_micro);
  });

  test('Ollama failing after two tool calls were relayed: an error event, and the calls and prompt billed', async () => {
    h.double.options.tokenDelayMs = 20;
    h.double.queue.push({
      kind: 'error-mid',
      tokens: [],
      toolCalls: [
        { name: 'get_weather', arguments: { city: 'Paris' } },
        { name: 'get_weather', arguments: { city: 'Rome' } },
      ],
      message: 'model runner has unexpectedly stopped',
    });
    const text = await toolStream('tool-died-000001');
    expect(text).toContain('"tool_calls"');
    expect(text).toContain('model runner has unexpectedly stopped');
    const row = usage('tool-died-000001') as UsageRow;
    expect(row).toMatchObject({ status: 502, error_code: 'backend_error' });
    expect(row.completion_tokens).toBeGreaterThan(0);
    expect(row.prompt_tokens).toBeGreaterThan(0);
    expect(h.store.getOrg(orgId)?.balanceMicro).toBe(100_000_000 - row.cost_micro);
  });
});

describe('client timeouts towards Ollama', () => {
  test('OLLAMA_HEADERS_TIMEOUT_MS bounds the wait for the first line (defaults: 30 min, 10 min between lines)', async () => {
    const h = await startHarness({ double: { firstTokenDelayMs: 3_000 }, env: { OLLAMA_HEADERS_TIMEOUT_MS: '300' } });
    try {
      expect(h.services.config.OLLAMA_BODY_TIMEOUT_MS).toBe(600_000);
      const key = h.createKey();
      const started = Date.now();
      const res = await fetch(`${h.url}/api/chat.php`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-Client-Key': key.clientKey, 'X-Client-Secret': key.clientSecret },
        body: JSON.stringify({ prompt: 'slow' }),
      });
      expect(res.status).toBe(502);
      expect(Date.now() - started).toBeLessThan(2_900); // cut by the timeout, not by the answer
    } finally {
      await h.close();
    }
    const defaults = await startHarness();
    try {
      expect(defaults.services.config.OLLAMA_HEADERS_TIMEOUT_MS).toBe(1_800_000);
    } finally {
      await defaults.close();
    }
  });
});
