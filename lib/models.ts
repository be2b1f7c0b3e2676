/**
 * Public model names: the model table's aliases (with prices), and Ollama's own models under their own
 * names at price zero.
 */
import { GatewayError } from './errors';
import type { BackendPool } from './backends/pool';
import type { ModelEntry } from './types';

export interface ModelTable {
  getModel(name: string): ModelEntry | undefined;
  listModels(): ModelEntry[];
}

export class ModelCatalog {
  constructor(
    private readonly table: ModelTable,
    private readonly pool: BackendPool,
  ) {}

  /** The entry for a public name, or a 404 naming the model. */
  async resolve(name: string): Promise<ModelEntry> {
    const configured = this.table.getModel(name);
    if (configured) return configured;
    if (await this.pool.hasModel(name)) return ollamaOwnModel(name);
    throw new GatewayError('model_not_found', `The model '${name}' does not exist.`, { param: 'model' });
  }

  /** Every public model: the table's entries, then Ollama's models not shadowed by an alias. */
  async list(): Promise<Array<ModelEntry & { createdAt?: string }>> {
    const configured = this.table.listModels();
    const names = new Set(configured.map((m) => m.name));
    let own: Array<ModelEntry & { createdAt?: string }> = [];
    try {
      own = (await this.pool.models())
        .filter((m) => !names.has(m.name))
        .map((m) => ({ ...ollamaOwnModel(m.name, m.capabilities), createdAt: m.modifiedAt }));
    } catch {
      // Listing still works with Ollama down: the aliases are the gateway's own data.
    }
    return [...configured, ...own];
  }
}

function ollamaOwnModel(name: string, capabilities?: string[]): ModelEntry {
  const isEmbedding = capabilities?.includes('embedding') === true && !capabilities.includes('completion');
  return {
    name,
    ollamaModel: name,
    category: isEmbedding ? 'embedding' : 'chat',
    inputMicroPer1k: 0,
    outputMicroPer1k: 0,
    maxOutputTokens: null,
    tokenizer: null,
    imageTokens: null,
    configured: false,
  };
}
