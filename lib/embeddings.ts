/**
 * The core of embeddings: resolve the model → reserve the worst-case input cost → Ollama /api/embed →
 * settle with Ollama's own count. Same money rules as chat: nothing is spent that was not reserved,
 * and the balance never goes below zero.
 */
import type { BackendPool } from './backends/pool';
import type { CallContext } from './chat';
import { GatewayError, toGatewayError } from './errors';
import type { Metering } from './metering';
import type { ModelCatalog } from './models';
import { countTokens } from './tokens';
import type { Cost, ModelEntry } from './types';

export interface EmbeddingResult {
  model: ModelEntry;
  embeddings: number[][];
  promptTokens: number;
  cost: Cost;
}

/** tiktoken is not the model's tokenizer: reserve with a margin, as chat does. */
const ESTIMATE_MARGIN = 1.25;

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

    const estimate = inputs.reduce((sum, text) => sum + countTokens(text, model.tokenizer ?? undefined), 0);
    // Embedding models have no output; only the input is priced and reserved.
    const admission = this.metering.admit(ctx, model, {
      promptTokens: Math.ceil(estimate * ESTIMATE_MARGIN) + 16,
      completionTokens: 0,
    });

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
      const error = toGatewayError(err);
      admission.settle({ promptTokens: 0, completionTokens: 0 }, ctx.signal.aborted ? 499 : error.status, ctx.signal.aborted ? 'client_closed' : error.code);
      error.recorded = true;
      throw error;
    }

    // Ollama omits a zero count; tiktoken stands in for it.
    const promptTokens = result.promptTokens ?? estimate;
    const cost = admission.settle({ promptTokens, completionTokens: 0 }, 200, null);
    return { model, embeddings: result.embeddings, promptTokens, cost };
  }
}
