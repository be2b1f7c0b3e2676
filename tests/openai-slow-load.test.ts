/**
 * A model that takes long to load: past SSE_HEADER_GRACE_MS the stream's headers go out and
 * `: keep-alive` comments hold the connection, so client header timeouts never cut a healthy answer;
 * a failure after that point is an in-stream error event, never a clean end.
 */
import OpenAI from 'openai';
import { startHarness, type Harness } from './support/harness';

describe('streams while Ollama is still loading', () => {
  let h: Harness;
  let key: ReturnType<Harness['createKey']>;
  beforeAll(async () => {
    h = await startHarness({ double: { firstTokenDelayMs: 600 }, env: { SSE_HEADER_GRACE_MS: '100', SSE_KEEP_ALIVE_MS: '100' } });
    key = h.createKey('slow-loader');
  });
  afterAll(() => h.close());

  const stream = () =>
    fetch(`${h.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${key.apiKey}` },
      body: JSON.stringify({ model: 'covalid-1.0', messages: [{ role: 'user', content: 'slow one' }], stream: true }),
    });

  test('headers come before the first token, then keep-alive comments, then the whole answer', async () => {
    const started = Date.now();
    const res = await stream();
    const headersAfter = Date.now() - started;
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    expect(headersAfter).toBeLessThan(600); // the double is still "loading"
    const body = await res.text();
    expect(body).toContain(': keep-alive\n\n');
    const data = body.split('\n\n').filter((f) => f.startsWith('data: ')).map((f) => f.slice(6));
    expect(data.at(-1)).toBe('[DONE]');
    const content = data.slice(0, -1).map((d) => JSON.parse(d) as { choices: Array<{ delta?: { content?: string } }> });
    expect(content.map((c) => c.choices[0]?.delta?.content ?? '').join('')).toBe('Echo: slow one');
  });

  test('the SDK reads such a stream as usual', async () => {
    const client = new OpenAI({ apiKey: key.apiKey, baseURL: `${h.url}/v1`, maxRetries: 0 });
    const chunks = await client.chat.completions.create({ model: 'covalid-1.0', messages: [{ role: 'user', content: 'sdk' }], stream: true });
    let text = '';
    for await (const chunk of chunks) text += chunk.choices[0]?.delta?.content ?? '';
    expect(text).toBe('Echo: sdk');
  });

  test('Ollama failing after the headers went out is an error event and [DONE]', async () => {
    h.double.queue.push({ kind: 'error-before', status: 500, message: 'llama-server process has terminated' });
    const res = await stream();
    expect(res.status).toBe(200);
    const body = await res.text();
    const data = body.split('\n\n').filter((f) => f.startsWith('data: ')).map((f) => f.slice(6));
    expect(data.at(-1)).toBe('[DONE]');
    const error = JSON.parse(data.at(-2) as string) as { error: { message: string; type: string } };
    expect(error.error.type).toBe('server_error');
    expect(error.error.message).toMatch(/llama-server process has terminated/);
  });
});
