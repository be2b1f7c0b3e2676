/**
 * The core of embeddings: resolve the model → reserve the worst-case input cost → Ollama /api/embed →
 * settle with Ollama's own count. Same money rules as chat: nothing is spent that was not reserved,
 * and the balance never goes below zero.
 */
import type { CancelSignal } from './abort';
import type { BackendPool } from './backends/pool';
import { OllamaStreamError } from './backends/ndjson';
import type { Backend, EmbedResult } from './backends/types';
import type { CallContext } from './chat';
import { GatewayError } from './errors';
import { reserveEstimate, type Metering } from './metering';
import type { ModelCatalog } from './models';
import { countTokens } from './tokens';
import type { Cost, ModelEntry } from './types';

/**
 * Inputs per request to Ollama. A whole batch of 2,048 inputs of a 4,096-dimension model is a 115 MB
 * answer, parsed in one piece (seconds of a blocked event loop: every stream on the gateway waits);
 * batches of this many keep each parse to milliseconds, with the event loop free between them.
 * Ollama batches inputs for the model itself, so little is lost.
 */
export const EMBED_BATCH_INPUTS = 32;

export interface EmbeddingResult {
  model: ModelEntry;
  embeddings: number[][];
  promptTokens: number;
  cost: Cost;
}

export class EmbeddingService {
  constructor(
    private readonly metering: Metering,
    private readonly catalog: ModelCatalog,
    private readonly pool: BackendPool,
  ) {}

  async embed(ctx: CallContext, modelName: string, inputs: string[]): Promise<EmbeddingResult> {
    const allowance = this.metering.assertModelAllowed(ctx.principal, modelName);
    const model = await this.catalog.resolveAs(allowance, ctx.principal.allowedModels, modelName);
    // A configured alias says what it is for; Ollama's own models can all embed through /api/embed.
    if (model.configured && model.category !== 'embedding') {
      throw new GatewayError('invalid_request', `The model '${model.name}' is a ${model.category} model, not an embedding model.`, { param: 'model' });
    }

    // A tiktoken pass over every input, made only if admission or the usage fallback below needs it.
    let count: number | undefined;
    const estimate = (): number => (count ??= countAll(inputs, model));
    // Embedding models have no output; only the input is priced and reserved.
    const admission = this.metering.admit(ctx, model, { promptTokens: () => reserveEstimate(estimate()), completionTokens: 0 });

    let result;
    try {
      // dispatch: the fair queue, and one retry on another host when the first fails before answering.
      // The batches go to one host in turn, within one slot; a failure in any is a failure before the
      // answer (nothing has reached the client), so the pool may retry the whole on another host.
      const { lease, result: embedded } = await this.pool.dispatch(model.ollamaModel, { orgId: ctx.principal.orgId, signal: ctx.signal }, (backend) =>
        embedInBatches(backend, model.ollamaModel, inputs, ctx.signal, (batch) => countAll(batch, model)),
      );
      lease.release();
      result = embedded;
    } catch (err) {
      throw admission.fail(err, ctx.signal.aborted);
    }

    // Ollama omits a zero count; tiktoken stands in for it.
    const promptTokens = result.promptTokens ?? estimate();
    const cost = admission.done({ promptTokens, completionTokens: 0 });
    return { model, embeddings: result.embeddings, promptTokens, cost };
  }
}

/**
 * Embeds `inputs` in batches of EMBED_BATCH_INPUTS. The count is Ollama's, batch by batch; `estimate`
 * stands in for a batch whose count Ollama left out (it omits zero).
 */
async function embedInBatches(
  backend: Backend,
  ollamaModel: string,
  inputs: string[],
  signal: CancelSignal,
  estimate: (batch: string[]) => number,
): Promise<EmbedResult> {
  const embeddings: number[][] = [];
  let promptTokens = 0;
  for (let start = 0; start < inputs.length; start += EMBED_BATCH_INPUTS) {
    const batch = inputs.slice(start, start + EMBED_BATCH_INPUTS);
    const answer = await backend.embed(ollamaModel, batch, signal);
    if (answer.embeddings.length !== batch.length) {
      // This request's failure, as before batching: neither retried nor held against the host.
      const message = `Ollama returned ${answer.embeddings.length} embeddings for ${batch.length} inputs.`;
      throw new GatewayError('backend_error', message, { cause: new OllamaStreamError(message) });
    }
    for (const vector of answer.embeddings) embeddings.push(vector);
    promptTokens += answer.promptTokens ?? estimate(batch);
  }
  return { embeddings, promptTokens };
}

function countAll(texts: string[], model: ModelEntry): number {
  return texts.reduce((sum, text) => sum + countTokens(text, model.tokenizer ?? undefined), 0);
}
