/**
 * The core of the gateway: admit → reserve credits → Ollama → settle.
 *
 * A dialect calls `open()`; everything that can refuse the request happens inside it, before the
 * dialect writes a status line. What comes back is a stream of events whose end (normal, failed, or
 * abandoned by a client that left, even before it was read) settles the credits and writes the usage
 * row exactly once.
 */
import type { BackendPool, Lease } from './backends/pool';
import { onAbort, type CancelSignal } from './abort';
import { ENDED, nextBatch, type BatchSource } from './batch-source';
import type { BackendChunk } from './backends/types';
import { GatewayError, toGatewayError } from './errors';
import { reserveEstimate, type Metering, type Tab } from './metering';
import type { ModelCatalog } from './models';
import { FlatText } from './flat-text';
import { countInputTokens, countTokens } from './tokens';
import type { ChatEvent, ChatRequest, ChatResult, FinishReason, ModelCategory, ModelEntry, Principal, ToolCall, Usage } from './types';

export interface CallContext {
  principal: Principal;
  requestId: string;
  /** The route as a label for the usage log, e.g. `covalid.chat`. */
  route: string;
  /** Aborted when the client goes away; cancels the Ollama request. */
  signal: CancelSignal;
  /** Model categories this call may use; unset means chat only (moderation also runs its guard model here). */
  categories?: readonly ModelCategory[];
}

export interface ChatServiceOptions {
  /** Output bound for reservations when neither the request nor the model sets one. */
  defaultMaxOutputTokens: number;
  /** What an image adds to the prompt estimate (default TOKENS_PER_IMAGE; see lib/tokens.ts). */
  imageTokens?: number;
  now?: () => number;
}

export interface ChatExecution {
  model: ModelEntry;
  /**
   * Deltas, then exactly one `done`, in batches: one per read from Ollama, so a route writes what
   * arrived together in one write. Throws a GatewayError if Ollama fails mid-answer. A consumer that
   * stops before the `done` must `cancel()` (or `return()`): Ollama is stopped and the usage billed.
   */
  events: ChatEvents;
}

/** The events of one generation: read synchronously (lib/batch-source.ts) or as an async iterator. */
export type ChatEvents = BatchSource<ChatEvent> & AsyncIterableIterator<ChatEvent[], undefined>;

/** One generation, admitted and ready to send to Ollama. */
interface Generation {
  model: ModelEntry;
  /** The request with the output bound applied where money is at stake. */
  request: ChatRequest;
  /** The tiktoken count of the prompt (see `promptCounter`). */
  promptTokens: () => number;
  startedAt: number;
}

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
    const model = await this.resolve(ctx, request.model);
    const promptTokens = promptCounter(request, model, this.options.imageTokens);
    const outputBound = this.outputBound(request, model);
    const admission = this.metering.admit(ctx, model, { promptTokens: () => reserveEstimate(promptTokens()), completionTokens: outputBound });
    const generation = { model, request: withOutputBound(request, admission.boundsOutput, outputBound), promptTokens, startedAt };
    return { model, events: await this.start(ctx, generation, admission) };
  }

  /** Runs a request to the end and gathers the whole answer (for non-streaming routes). */
  async complete(ctx: CallContext, request: ChatRequest): Promise<{ model: ModelEntry; result: ChatResult }> {
    const { model, events } = await this.open(ctx, request);
    return { model, result: await collect(events) };
  }

  /**
   * Several requests to one model as one call (moderation's inputs): one admission that reserves for
   * all of them, the generations one after another (Ollama would queue them anyway), and one
   * settlement with the summed usage, so one usage row. `read` turns each answer into the caller's
   * result; if it throws, the call fails with that error, billed for what was generated so far.
   */
  async completeAll<T>(ctx: CallContext, requests: readonly ChatRequest[], read: (result: ChatResult) => T): Promise<T[]> {
    const [first] = requests;
    if (!first) return [];
    if (requests.some((r) => r.model !== first.model)) throw new Error('completeAll: every request must name the same model');
    const model = await this.resolve(ctx, first.model);
    const items = requests.map((request) => ({ request, promptTokens: promptCounter(request, model, this.options.imageTokens), outputBound: this.outputBound(request, model) }));
    const admission = this.metering.admit(ctx, model, {
      // Each input is its own chat (its own template), so each gets its own margin.
      promptTokens: () => items.reduce((sum, item) => sum + reserveEstimate(item.promptTokens()), 0),
      completionTokens: items.reduce((sum, item) => sum + item.outputBound, 0),
    });
    const tab = admission.shared();
    const results: T[] = [];
    try {
      for (const { request, promptTokens, outputBound } of items) {
        const generation = { model, request: withOutputBound(request, admission.boundsOutput, outputBound), promptTokens, startedAt: this.now() };
        results.push(read(await collect(await this.start(ctx, generation, tab))));
      }
    } catch (err) {
      // Already settled when a generation failed; otherwise (e.g. `read` refused an answer) it is now.
      throw tab.fail(err, ctx.signal.aborted);
    }
    tab.close();
    return results;
  }

  /** The allow-list, the model, and whether this call may chat with it: every refusal that costs nothing. */
  private async resolve(ctx: CallContext, name: string): Promise<ModelEntry> {
    const allowance = this.metering.assertModelAllowed(ctx.principal, name);
    const model = await this.catalog.resolveAs(allowance, ctx.principal.allowedModels, name);
    if (!(ctx.categories ?? ['chat']).includes(model.category)) {
      throw new GatewayError('invalid_request', `The model '${model.name}' is a ${model.category} model and cannot chat.`, { param: 'model' });
    }
    return model;
  }

  private outputBound(request: ChatRequest, model: ModelEntry): number {
    return request.options.maxTokens ?? model.maxOutputTokens ?? this.options.defaultMaxOutputTokens;
  }

  /** Calls Ollama for an admitted generation and returns the relay of its answer; a failure is settled on `tab`. */
  private async start(ctx: CallContext, generation: Generation, tab: Tab): Promise<ChatEvents> {
    const { model, request } = generation;
    let dispatched: { lease: Lease; result: BatchSource<BackendChunk> };
    try {
      // Waits its turn in the fair queue, then calls Ollama; a failure before the first byte is retried
      // once on another host. On failure the pool has already released the slot.
      dispatched = await this.pool.dispatch(model.ollamaModel, { orgId: ctx.principal.orgId, signal: ctx.signal }, (backend) =>
        backend.chat({
          model: model.ollamaModel,
          input: request.input,
          options: request.options,
          ...(request.format !== undefined && { format: request.format }),
          ...(request.tools !== undefined && { tools: request.tools }),
          ...(request.think !== undefined && { think: request.think }),
          signal: ctx.signal,
        }),
      );
    } catch (err) {
      throw tab.fail(err, ctx.signal.aborted);
    }
    return new RelayedAnswer(ctx, generation, dispatched.lease, dispatched.result, tab, this.now);
  }
}

/**
 * Relays Ollama's chunks as events. The generation ends exactly once — settled on `tab`, its slot
 * freed — by whichever comes first: the final line, a failure, the consumer cancelling early, or the
 * client leaving. The last is handled by an abort listener, so a client that leaves before the
 * events are ever read still gets its reservation settled and its slot released.
 *
 * A batch source (lib/batch-source.ts) read synchronously, so a route that keeps up with Ollama costs
 * no promise per token; `next()` serves the async-iterator consumers.
 */
class RelayedAnswer implements ChatEvents {
  private readonly encoding: string | undefined;
  private readonly relayedText = new FlatText();
  private firstTokenAt: number | null = null;
  /** The slot is freed and the tab settled (or being settled): nothing more is billed. */
  private ended = false;
  /** The final event has been read: every later read is `ENDED`. */
  private finished = false;
  /** Set when the generation ended as failed: what every later read throws. */
  private failure: GatewayError | undefined;
  /** Takes the abort listener off. */
  private stopListening: () => void = () => undefined;

  constructor(
    private readonly ctx: CallContext,
    private readonly generation: Generation,
    private readonly lease: Lease,
    private readonly source: BatchSource<BackendChunk>,
    private readonly tab: Tab,
    private readonly now: () => number,
  ) {
    this.encoding = generation.model.tokenizer ?? undefined;
    // The client may have left while the request was being dispatched: a listener added now would never fire.
    if (ctx.signal.aborted) this.leave();
    else this.stopListening = onAbort(ctx.signal, this.leave);
  }

  read(): ChatEvent[] | null | typeof ENDED {
    // Ended by the client leaving (it was billed up to here) or by a failure: relay nothing more.
    if (this.failure) throw this.failure;
    if (this.finished) return ENDED;
    let batch: BackendChunk[] | null | typeof ENDED;
    try {
      batch = this.source.read();
      if (batch === ENDED) throw new GatewayError('backend_error', 'Ollama ended the answer without a final line.');
    } catch (err) {
      throw this.fail(err, this.ctx.signal.aborted);
    }
    if (batch === null) return null;
    // Empty batches too (lines without text, e.g. an empty first token): a stream's headers go out
    // with its first batch, and must not wait for the first line with text.
    const out: ChatEvent[] = [];
    for (const chunk of batch) {
      if (chunk.content || chunk.thinking || chunk.toolCalls.length) {
        this.firstTokenAt ??= this.now();
        this.relayedText.add(chunk.content);
        this.relayedText.add(chunk.thinking);
        // A tool call is generated text too: the client has it, so it is billed with the rest.
        for (const call of chunk.toolCalls) this.relayedText.add(call.name + JSON.stringify(call.arguments));
        const delta: ChatEvent = { type: 'delta', content: chunk.content };
        if (chunk.thinking) delta.thinking = chunk.thinking;
        if (chunk.toolCalls.length) delta.toolCalls = chunk.toolCalls;
        out.push(delta);
      }
      if (chunk.done) {
        out.push(this.finish(chunk));
        break;
      }
    }
    return out;
  }

  whenReadable(callback: () => void): void {
    if (this.failure || this.finished) queueMicrotask(callback);
    else this.source.whenReadable(callback);
  }

  /** The consumer stopped early (the client left, or it stopped reading): billed as far as relayed. */
  cancel(): void {
    if (!this.ended) this.fail(undefined, true);
    // After the final line this only lets the connection go back to the pool.
    this.source.cancel();
  }

  next(): Promise<IteratorResult<ChatEvent[], undefined>> {
    return nextBatch(this);
  }

  return(): Promise<IteratorResult<ChatEvent[], undefined>> {
    this.cancel();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  private finish(chunk: BackendChunk): ChatEvent {
    const { generation } = this;
    // Ollama omits zero counts; tiktoken fills in what it left out.
    const usage: Usage = {
      promptTokens: chunk.promptEvalCount ?? generation.promptTokens(),
      completionTokens: chunk.evalCount ?? countTokens(this.relayedText.value, this.encoding),
    };
    this.end();
    this.finished = true;
    // Only the end of the body is left to read: the connection goes back to the pool.
    this.source.cancel();
    const cost = this.tab.done(usage);
    const finished = this.now();
    return {
      type: 'done',
      finishReason: finishReasonOf(chunk.doneReason),
      usage,
      cost,
      timings: { timeToFirstTokenMs: (this.firstTokenAt ?? finished) - generation.startedAt, totalMs: finished - generation.startedAt },
    };
  }

  /** Takes the abort listener off and frees the slot; false when the generation had already ended. */
  private end(): boolean {
    if (this.ended) return false;
    this.ended = true;
    this.stopListening();
    this.lease.release();
    return true;
  }

  /** Ends the generation as failed, billing what was relayed: its tokens, plus the prompt that produced them. */
  private fail(err: unknown, clientLeft: boolean): GatewayError {
    if (this.end()) {
      const completionTokens = countTokens(this.relayedText.value, this.encoding);
      // The prompt is billed once anything it produced reached the client.
      const relayedAnything = this.firstTokenAt !== null;
      this.failure = this.tab.fail(err, clientLeft, { promptTokens: relayedAnything ? this.generation.promptTokens() : 0, completionTokens });
    }
    return this.failure ?? toGatewayError(err);
  }

  private readonly leave = (): void => {
    this.fail(undefined, true);
  };
}

/** Gathers a whole answer from its events. */
async function collect(events: ChatEvents): Promise<ChatResult> {
  const content = new FlatText();
  const thinking = new FlatText();
  const toolCalls: ToolCall[] = [];
  for await (const batch of events) {
    for (const event of batch) {
      if (event.type === 'delta') {
        content.add(event.content);
        thinking.add(event.thinking ?? '');
        if (event.toolCalls) toolCalls.push(...event.toolCalls);
      } else {
        const finishReason: FinishReason = toolCalls.length && event.finishReason === 'stop' ? 'tool_calls' : event.finishReason;
        return { content: content.value, thinking: thinking.value, toolCalls, finishReason, usage: event.usage, cost: event.cost, timings: event.timings };
      }
    }
  }
  throw new GatewayError('backend_error', 'Ollama ended the answer without a final line.');
}

/**
 * The tiktoken count of a prompt, made on first use and at most once: admission asks only when the
 * estimate changes what is reserved, and settlement only when Ollama left its own count out.
 */
function promptCounter(request: ChatRequest, model: ModelEntry, imageTokens: number | undefined): () => number {
  let count: number | undefined;
  return () => (count ??= countInputTokens(request.input, model.tokenizer ?? undefined, request.tools, model.imageTokens ?? imageTokens));
}

/** A limited balance with a priced output must never produce more than was reserved for. */
function withOutputBound(request: ChatRequest, boundsOutput: boolean, outputBound: number): ChatRequest {
  if (!boundsOutput || request.options.maxTokens !== undefined) return request;
  return { ...request, options: { ...request.options, maxTokens: outputBound } };
}

function finishReasonOf(doneReason: string | undefined): FinishReason {
  return doneReason === 'length' ? 'length' : 'stop';
}
