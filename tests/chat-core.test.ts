/**
 * ChatService driven directly (no HTTP in between), against the Ollama double and a real Store on a
 * temporary file: settlement of an execution whose events are never read, and when the tiktoken
 * prompt estimate is (and is not) computed.
 */
import { GatewayError } from '../lib/errors';
import type { CallContext } from '../lib/chat';
import { reserveEstimate } from '../lib/metering';
import * as tokens from '../lib/tokens';
import type { ChatRequest, Principal } from '../lib/types';
import { startHarness, type Harness } from './support/harness';
import { until } from './support/until';

jest.setTimeout(30_000);

interface UsageRow {
  status: number;
  error_code: string | null;
  prompt_tokens: number;
  completion_tokens: number;
  cost_micro: number;
}

const PROMPT = 'Tell me, in some detail, why the sky is blue and sunsets are red.';
const request = (model: string, maxTokens = 20): ChatRequest => ({
  model,
  input: { kind: 'messages', messages: [{ role: 'user', content: PROMPT }] },
  options: { maxTokens },
});

describe('ChatService', () => {
  let h: Harness;
  let requestCounter = 0;

  beforeAll(async () => {
    h = await startHarness();
    // 1 credit per 1,000 tokens each way: 1,000 micro-credits per token.
    h.store.setModel({ name: 'priced', ollamaModel: 'llama3.2', inputMicroPer1k: 1_000_000, outputMicroPer1k: 1_000_000 });
  });
  afterAll(() => h.close());
  afterEach(() => {
    jest.restoreAllMocks();
    h.double.queue.length = 0;
    h.double.requests.length = 0;
    h.double.options.tokenDelayMs = 0;
  });

  /** A fresh key (own organisation) and a call context for it; `credits` makes the balance limited. */
  function caller(credits?: number): { ctx: CallContext; controller: AbortController; orgId: string } {
    const key = h.createKey(undefined, credits);
    const principal = h.store.authenticateApiKey(key.apiKey) as Principal;
    const controller = new AbortController();
    const ctx = { principal, requestId: `core-${++requestCounter}`, route: 'test.chat', signal: controller.signal };
    return { ctx, controller, orgId: key.org.id };
  }
  const usageRows = (requestId: string) =>
    h.store.db.prepare('SELECT status, error_code, prompt_tokens, completion_tokens, cost_micro FROM usage WHERE request_id = ?').all(requestId) as UsageRow[];
  const balance = (orgId: string) => h.store.getOrg(orgId)?.balanceMicro;
  const inFlight = () => h.services.pool.status()[0]?.inFlight;
  const longReply = () => h.double.queue.push({ kind: 'reply', tokens: Array.from({ length: 100 }, (_, i) => ` word${i}`) });

  describe('a client that leaves', () => {
    test('before the events are ever read: settled as 499 with nothing billed, the slot freed, Ollama aborted', async () => {
      const { ctx, controller, orgId } = caller(10);
      longReply();
      h.double.options.tokenDelayMs = 30;
      const execution = await h.services.chat.open(ctx, request('priced'));
      expect(balance(orgId)).toBeLessThan(10_000_000); // the reservation is held
      expect(inFlight()).toBe(1);

      controller.abort();

      expect(inFlight()).toBe(0);
      expect(balance(orgId)).toBe(10_000_000);
      expect(usageRows(ctx.requestId)).toEqual([{ status: 499, error_code: 'client_closed', prompt_tokens: 0, completion_tokens: 0, cost_micro: 0 }]);
      await until(() => h.double.generations()[0]?.aborted === true, 'the double to see the abort');
      // Reading afterwards gets the logged client-left error, and settles nothing again.
      const read = execution.events.next();
      await expect(read).rejects.toBeInstanceOf(GatewayError);
      await expect(read).rejects.toMatchObject({ recorded: true });
      expect(usageRows(ctx.requestId)).toHaveLength(1);
      expect(balance(orgId)).toBe(10_000_000);
    });

    test('while the consumer is stuck between two reads: billed for what was relayed, at once', async () => {
      const { ctx, controller, orgId } = caller(10);
      longReply();
      h.double.options.tokenDelayMs = 30;
      const { events } = await h.services.chat.open(ctx, request('priced', 200));
      const first = await events.next();
      const second = await events.next();
      // 30 ms between tokens: each read from Ollama is a batch of one.
      expect([first.value, second.value]).toMatchObject([[{ type: 'delta', content: ' word0' }], [{ type: 'delta', content: ' word1' }]]);

      controller.abort(); // the generator is suspended at its second yield

      expect(inFlight()).toBe(0);
      const [row] = usageRows(ctx.requestId);
      const relayed = tokens.countTokens(' word0 word1');
      const prompt = tokens.countInputTokens(request('priced').input);
      expect(row).toEqual({ status: 499, error_code: 'client_closed', prompt_tokens: prompt, completion_tokens: relayed, cost_micro: (prompt + relayed) * 1_000 });
      expect(balance(orgId)).toBe(10_000_000 - (prompt + relayed) * 1_000);
      await expect(events.next()).rejects.toMatchObject({ recorded: true });
      expect(usageRows(ctx.requestId)).toHaveLength(1);
    });
  });

  describe('the tiktoken prompt estimate', () => {
    test('a free model for an unlimited organisation without token limits: never computed, nothing reserved', async () => {
      const { ctx } = caller();
      const count = jest.spyOn(tokens, 'countInputTokens');
      const reserve = jest.spyOn(h.store, 'reserve');
      const { result } = await h.services.chat.complete(ctx, request('llama3.2'));
      expect(result.content).toBe(`Echo: ${PROMPT}`);
      expect(count).not.toHaveBeenCalled();
      expect(reserve).toHaveBeenCalledWith(ctx.principal.orgId, 0, []);
      // Ollama's own count is what is logged.
      const sentPromptCount = 4 + PROMPT.split(' ').length;
      expect(usageRows(ctx.requestId)).toEqual([{ status: 200, error_code: null, prompt_tokens: sentPromptCount, completion_tokens: result.usage.completionTokens, cost_micro: 0 }]);
    });

    test('…computed once after all when Ollama leaves its prompt count out', async () => {
      const { ctx } = caller();
      h.double.queue.push({ kind: 'reply', tokens: ['Blue', ' light'], promptEvalCount: null });
      const count = jest.spyOn(tokens, 'countInputTokens');
      const { result } = await h.services.chat.complete(ctx, request('llama3.2'));
      expect(count).toHaveBeenCalledTimes(1);
      const estimate = count.mock.results[0]?.value as number;
      expect(estimate).toBeGreaterThan(0);
      expect(result.usage.promptTokens).toBe(estimate);
      expect(usageRows(ctx.requestId)[0]).toMatchObject({ status: 200, prompt_tokens: estimate });
    });

    test('a free model with a tokens-per-minute limit: the estimate sizes the hold, as before', async () => {
      const key = h.createKey();
      h.store.setKeyLimits(key.clientKey, { tpm: 30 });
      const principal = h.store.authenticateApiKey(key.apiKey) as Principal;
      expect(principal.limits?.key.tpm).toBe(30);
      const ctx: CallContext = { principal, requestId: `core-${++requestCounter}`, route: 'test.chat', signal: new AbortController().signal };
      const worst = reserveEstimate(tokens.countInputTokens(request('llama3.2').input)) + 20;
      expect(worst).toBeGreaterThan(30);
      const refused = h.services.chat.open(ctx, request('llama3.2'));
      await expect(refused).rejects.toMatchObject({ code: 'rate_limited' });
      await expect(refused).rejects.toThrow(`This request may use up to ${worst} tokens, more than the limit of 30 tokens per minute for this key`);
      expect(h.double.generations()).toHaveLength(0);
    });

    test('a priced model for a limited organisation: the reservation is the estimate with its margin, plus the output bound', async () => {
      const { ctx, orgId } = caller(10);
      const reserve = jest.spyOn(h.store, 'reserve');
      h.double.queue.push({ kind: 'reply', tokens: ['Rayleigh.'], promptEvalCount: 17, evalCount: 2 });
      await h.services.chat.complete(ctx, request('priced', 20));
      const worstTokens = reserveEstimate(tokens.countInputTokens(request('priced').input)) + 20;
      expect(reserve).toHaveBeenCalledTimes(1);
      expect(reserve).toHaveBeenCalledWith(orgId, worstTokens * 1_000, []);
      expect(balance(orgId)).toBe(10_000_000 - 19 * 1_000);
    });
  });
});
