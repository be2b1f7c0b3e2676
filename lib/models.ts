/**
 * Public model names: the model table's aliases (with prices), and Ollama's own models under their own
 * names at price zero.
 */
import { GatewayError } from './errors';
import { modelForbidden, type ModelAllowance } from './limits/limits';
import { sameModel, type BackendPool } from './backends/pool';
import type { ModelEntry } from './types';

export interface ModelTable {
  getModel(name: string): ModelEntry | undefined;
  listModels(): readonly ModelEntry[];
}

export class ModelCatalog {
  constructor(
    private readonly table: ModelTable,
    private readonly pool: BackendPool,
  ) {}

  /**
   * The entry for a public name, or a 404 naming the model. An Ollama model is known by the name a host
   * lists it under, whichever spelling the caller used (Ollama takes any case, and no tag for
   * `:latest`): one name in usage rows and metrics, and an alias that prices a model under its own
   * Ollama name (`models set qwen3:8b --ollama qwen3:8b`) applies to every spelling of it.
   */
  async resolve(name: string): Promise<ModelEntry> {
    const configured = this.table.getModel(name);
    if (configured) return configured;
    const listed = await this.pool.listedName(name);
    if (listed === undefined) throw new GatewayError('model_not_found', `The model '${name}' does not exist.`, { param: 'model' });
    // An alias that prices this very model under the model's own name, in any spelling: it applies.
    // (Not one that only shares the name: `llama3.2 → qwen3:8b` does not capture `llama3.2:latest`.)
    const alias = this.table.listModels().find((m) => sameModel(m.name, listed) && sameModel(m.ollamaModel, listed));
    if (alias) return alias;
    // The host's spelling, with or without `:latest` as the caller wrote it (`LLAMA3.2` → `llama3.2`).
    const untagged = listed.endsWith(':latest') ? listed.slice(0, -':latest'.length) : undefined;
    const asListed = name.toLowerCase() === listed.toLowerCase();
    return ollamaOwnModel(asListed || untagged === undefined ? listed : untagged);
  }

  /**
   * The model for a request an allow-list names only in another spelling (Limits.assertModelAllowed:
   * another case, with or without `:latest`), or a 403. An entry that is an alias's name means that
   * alias; another spelling reaches it only when it prices an Ollama model under that model's own name
   * (`qwen3:8b → qwen3:8b`). Any other entry means Ollama's own model of that name, in any spelling,
   * priced or not. So an alias `llama3.2` for another model does not allow `Llama3.2` (Ollama's
   * llama3.2). Entries no spelling could reach refuse before anything is resolved: what the answer says
   * of a model the key may not use must not depend on what Ollama has.
   */
  async resolveAllowed(allowed: readonly string[], name: string): Promise<ModelEntry> {
    const reachable = allowed.filter((entry) => {
      if (!sameModel(entry, name)) return false;
      const alias = this.table.getModel(entry);
      return alias === undefined || sameModel(alias.name, alias.ollamaModel);
    });
    if (reachable.length === 0) throw modelForbidden(name);
    const model = await this.resolve(name);
    if (!reachable.some((entry) => this.entryMeans(entry, model))) throw modelForbidden(name);
    return model;
  }

  /** The model a key asks for by name, as Limits.assertModelAllowed said its allow-list names it. */
  resolveAs(allowance: ModelAllowance, allowed: readonly string[] | null | undefined, name: string): Promise<ModelEntry> {
    return allowance === 'spelling' ? this.resolveAllowed(allowed ?? [], name) : this.resolve(name);
  }

  /**
   * Whether a key with this allow-list (null: none) may use a listed model, so listings show a key
   * the models it can use: one named as listed, or in another spelling as resolveAllowed has it.
   */
  allows(allowed: readonly string[] | null | undefined, model: ModelEntry): boolean {
    return allowed == null || allowed.some((entry) => entry === model.name || this.entryMeans(entry, model));
  }

  /** Whether an allow-list entry means this model (see resolveAllowed). */
  private entryMeans(entry: string, model: ModelEntry): boolean {
    return this.table.getModel(entry) !== undefined
      ? model.configured && model.name === entry
      : sameModel(entry, model.name) && (!model.configured || sameModel(model.ollamaModel, model.name));
  }

  /** Every public model: the table's entries, then Ollama's models not shadowed by an alias. */
  async list(): Promise<Array<ModelEntry & { createdAt?: string }>> {
    const configured = this.table.listModels();
    const names = new Set(configured.map((m) => m.name));
    let own: Array<ModelEntry & { createdAt?: string }> = [];
    try {
      own = (await this.pool.models())
        // Not listed under its own name when a name shadows it, or an alias prices it under that name.
        .filter((m) => !names.has(m.name) && !configured.some((a) => sameModel(a.name, m.name) && sameModel(a.ollamaModel, m.name)))
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
