/**
 * The core of the gateway: admit → reserve credits → Ollama → settle.
 *
 * A dialect calls `open()`; everything that can refuse the request happens inside it, before the
 * dialect writes a status line. What comes back is a stream of events whose end (normal, failed, or
 * abandoned by a client that left) settles the credits and writes the usage row exactly once.
 */
import type { BackendPool, Lease } from './backends/pool';
import type { BackendChunk } from './backends/types';
import { GatewayError, toGatewayError } from './errors';
import type { Metering } from './metering';
import type { ModelCatalog } from './models';
import { countInputTokens, countTokens } from './tokens';
import type { ChatEvent, ChatRequest, ChatResult, FinishReason, ModelCategory, ModelEntry, Principal, ToolCall, Usage } from './types';

export interface CallContext {
  principal: Principal;
  requestId: string;
  /** The route as a label for the usage log, e.g. `covalid.chat`. */
  route: string;
  /** Aborted when the client goes away; cancels the Ollama request. */
  signal: AbortSignal;
  /** Model categories this call may use; unset means chat only (moderation also runs its guard model here). */
  categories?: readonly ModelCategory[];
}

export interface ChatServiceOptions {
  /** Output bound for reservations when neither the request nor the model sets one. */
  defaultMaxOutputTokens: number;
  now?: () => number;
}

export interface ChatExecution {
  model: ModelEntry;
  /** Deltas, then exactly one `done`. Throws a GatewayError if Ollama fails mid-answer. */
  events: AsyncGenerator<ChatEvent, void, undefined>;
}

/** Prompt estimates come from tiktoken, not the model's own tokenizer; reserve with a margin. */
const PROMPT_ESTIMATE_MARGIN = 1.25;

export class ChatService {
  private readonly now: () => number;

  constructor(
    private readonly metering: Metering,
    private readonly catalog: ModelCatalog,
    private readonly pool: BackendPool,
    private readonly options: ChatServiceOptions,
  ) {
    this.now = options.now ?? Date.now;
  }

  async open(ctx: CallContext, request: ChatRequest): Promise<ChatExecution> {
    const startedAt = this.now();
    this.metering.assertModelAllowed(ctx.principal, request.model);
    const model = await this.catalog.resolve(request.model);
    if (!(ctx.categories ?? ['chat']).includes(model.category)) {
      throw new GatewayError('invalid_request', `The model '${model.name}' is a ${model.category} model and cannot chat.`, { param: 'model' });
    }

    const promptEstimate = countInputTokens(request.input, model.tokenizer ?? undefined);
    const outputBound = request.options.maxTokens ?? model.maxOutputTokens ?? this.options.defaultMaxOutputTokens;
    const admission = this.metering.admit(ctx, model, {
      promptTokens: Math.ceil(promptEstimate * PROMPT_ESTIMATE_MARGIN) + 16,
      completionTokens: outputBound,
    });
    // A limited balance with a priced output must never produce more than was reserved for.
    const options =
      admission.boundsOutput && request.options.maxTokens === undefined ? { ...request.options, maxTokens: outputBound } : request.options;

    let lease: Lease;
    let chunks: AsyncIterable<BackendChunk>;
    try {
      // Waits its turn in the fair queue, then calls Ollama; a failure before the first byte is retried
      // once on another host. On failure the pool has already released the slot.
      ({ lease, result: chunks } = await this.pool.dispatch(model.ollamaModel, { orgId: ctx.principal.orgId, signal: ctx.signal }, (backend) =>
        backend.chat({
          model: model.ollamaModel,
          input: request.input,
          options,
          ...(request.format !== undefined && { format: request.format }),
          ...(request.tools !== undefined && { tools: request.tools }),
          ...(request.think !== undefined && { think: request.think }),
          signal: ctx.signal,
        }),
      ));
    } catch (err) {
      const error = ctx.signal.aborted ? new GatewayError('backend_error', 'The client left before Ollama answered.') : toGatewayError(err);
      admission.settle({ promptTokens: 0, completionTokens: 0 }, ctx.signal.aborted ? 499 : error.status, ctx.signal.aborted ? 'client_closed' : error.code);
      error.recorded = true;
      throw error;
    }

    const releaseLease = lease.release;
    // Safety net: a client that leaves frees the slot even if the events below are never iterated.
    ctx.signal.addEventListener('abort', releaseLease, { once: true });
    const encoding = model.tokenizer ?? undefined;
    const now = this.now;
    async function* events(): AsyncGenerator<ChatEvent, void, undefined> {
      let relayedText = '';
      let firstTokenAt: number | null = null;
      let settled = false;
      try {
        for await (const chunk of chunks) {
          if (firstTokenAt === null && (chunk.content || chunk.thinking || chunk.toolCalls.length)) firstTokenAt = now();
          if (chunk.content || chunk.thinking || chunk.toolCalls.length) {
            relayedText += chunk.content + chunk.thinking;
            const delta: ChatEvent = { type: 'delta', content: chunk.content };
            if (chunk.thinking) delta.thinking = chunk.thinking;
            if (chunk.toolCalls.length) delta.toolCalls = chunk.toolCalls;
            yield delta;
          }
          if (chunk.done) {
            // Ollama omits zero counts; tiktoken fills in what it left out.
            const usage: Usage = {
              promptTokens: chunk.promptEvalCount ?? promptEstimate,
              completionTokens: chunk.evalCount ?? countTokens(relayedText, encoding),
            };
            const cost = admission.settle(usage, 200, null);
            const end = now();
            settled = true;
            yield {
              type: 'done',
              finishReason: finishReasonOf(chunk.doneReason),
              usage,
              cost,
              timings: { timeToFirstTokenMs: (firstTokenAt ?? end) - startedAt, totalMs: end - startedAt },
            };
            return;
          }
        }
        throw new GatewayError('backend_error', 'Ollama ended the answer without a final line.');
      } catch (err) {
        const error = toGatewayError(err);
        if (!settled) settlePartial(relayedText, ctx.signal.aborted ? 499 : error.status, ctx.signal.aborted ? 'client_closed' : error.code);
        settled = true;
        error.recorded = true;
        throw error;
      } finally {
        // Reached without settling: the consumer stopped reading (client left) before the end.
        if (!settled) settlePartial(relayedText, 499, 'client_closed');
        releaseLease();
      }
    }

    /** Bills what was relayed before the stream was cut: its tokens, plus the prompt that produced them. */
    const settlePartial = (relayedText: string, status: number, errorCode: string): void => {
      const completionTokens = countTokens(relayedText, encoding);
      const usage: Usage = { promptTokens: completionTokens > 0 ? promptEstimate : 0, completionTokens };
      admission.settle(usage, status, errorCode);
    };

    return { model, events: events() };
  }

  /** Runs a request to the end and gathers the whole answer (for non-streaming routes). */
  async complete(ctx: CallContext, request: ChatRequest): Promise<{ model: ModelEntry; result: ChatResult }> {
    const { model, events } = await this.open(ctx, request);
    let content = '';
    let thinking = '';
    const toolCalls: ToolCall[] = [];
    for await (const event of events) {
      if (event.type === 'delta') {
        content += event.content;
        thinking += event.thinking ?? '';
        if (event.toolCalls) toolCalls.push(...event.toolCalls);
      } else {
        const finishReason: FinishReason = toolCalls.length && event.finishReason === 'stop' ? 'tool_calls' : event.finishReason;
        return { model, result: { content, thinking, toolCalls, finishReason, usage: event.usage, cost: event.cost, timings: event.timings } };
      }
    }
    throw new GatewayError('backend_error', 'Ollama ended the answer without a final line.');
  }
}

function finishReasonOf(doneReason: string | undefined): FinishReason {
  return doneReason === 'length' ? 'length' : 'stop';
}
