/**
 * The core of embeddings: resolve the model → reserve the worst-case input cost → Ollama /api/embed →
 * settle with Ollama's own count. Same money rules as chat: nothing is spent that was not reserved,
 * and the balance never goes below zero.
 */
import type { BackendPool } from './backends/pool';
import type { CallContext } from './chat';
import { GatewayError } from './errors';
import { reserveEstimate, type Metering } from './metering';
import type { ModelCatalog } from './models';
import { countTokens } from './tokens';
import type { Cost, ModelEntry } from './types';

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
    this.metering.assertModelAllowed(ctx.principal, modelName);
    const model = await this.catalog.resolve(modelName);
    // A configured alias says what it is for; Ollama's own models can all embed through /api/embed.
    if (model.configured && model.category !== 'embedding') {
      throw new GatewayError('invalid_request', `The model '${model.name}' is a ${model.category} model, not an embedding model.`, { param: 'model' });
    }

    // A tiktoken pass over every input, made only if admission or the usage fallback below needs it.
    let count: number | undefined;
    const estimate = (): number => (count ??= inputs.reduce((sum, text) => sum + countTokens(text, model.tokenizer ?? undefined), 0));
    // Embedding models have no output; only the input is priced and reserved.
    const admission = this.metering.admit(ctx, model, { promptTokens: () => reserveEstimate(estimate()), completionTokens: 0 });

    let result;
    try {
      // dispatch: the fair queue, and one retry on another host when the first fails before answering.
      const { lease, result: embedded } = await this.pool.dispatch(model.ollamaModel, { orgId: ctx.principal.orgId, signal: ctx.signal }, (backend) =>
        backend.embed(model.ollamaModel, inputs, ctx.signal),
      );
      lease.release();
      result = embedded;
      if (result.embeddings.length !== inputs.length) {
        throw new GatewayError('backend_error', `Ollama returned ${result.embeddings.length} embeddings for ${inputs.length} inputs.`);
      }
    } catch (err) {
      throw admission.fail(err, ctx.signal.aborted);
    }

    // Ollama omits a zero count; tiktoken stands in for it.
    const promptTokens = result.promptTokens ?? estimate();
    const cost = admission.done({ promptTokens, completionTokens: 0 });
    return { model, embeddings: result.embeddings, promptTokens, cost };
  }
}
