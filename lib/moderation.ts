/**
 * Moderation by a local guard model (Llama Guard 3 through Ollama), never a remote service.
 *
 * One call is one request through the ChatService, however many texts it holds: one admission
 * reserves for all of them, the guard model judges each text in its own chat, and one settlement
 * bills the sum and writes one usage row. The guard answers `safe`, or `unsafe` and a line of hazard
 * codes (`S1,S10`); those map onto OpenAI's 13 categories (moderation-categories.ts).
 */
import type { CallContext, ChatService } from './chat';
import { GatewayError } from './errors';
import type { ModelTable } from './models';
import { openAiCategoriesFor, type OpenAiCategory } from './moderation-categories';
import type { ChatRequest } from './types';

export interface Verdict {
  /** True when any OpenAI category is set (hazards without an OpenAI counterpart do not flag). */
  flagged: boolean;
  categories: Record<OpenAiCategory, boolean>;
  /** The guard's own hazard codes, e.g. `['S1', 'S10']`; empty when safe. */
  hazards: string[];
}

/**
 * Reads a Llama Guard answer: first non-empty line `safe` or `unsafe`, then comma-separated codes.
 * Returns undefined for anything else (e.g. MODERATION_MODEL names an ordinary chat model).
 */
export function parseVerdict(text: string): Verdict | undefined {
  const lines = text.trim().split(/\r?\n/);
  const head = (lines[0] ?? '').trim().toLowerCase();
  if (head !== 'safe' && head !== 'unsafe') return undefined;
  const hazards = head === 'unsafe' ? [...new Set(lines.slice(1).join(',').toUpperCase().match(/\bS\d{1,2}\b/g) ?? [])] : [];
  const categories = openAiCategoriesFor(hazards);
  return { flagged: Object.values(categories).some(Boolean), categories, hazards };
}

/** The guard's verdict is a few tokens; this bound keeps the credit reservation (and a runaway model) small. */
const VERDICT_MAX_TOKENS = 64;

export class Moderator {
  constructor(
    private readonly chat: ChatService,
    /** To name the Ollama model behind an alias when it is missing. */
    private readonly table: Pick<ModelTable, 'getModel'>,
    /** The public name of the guard model: an Ollama model, or an alias of category `moderation` or `chat`. */
    readonly model: string,
  ) {}

  /** One verdict per text, in order, under one admission (see the top of this file). */
  async moderate(ctx: Omit<CallContext, 'categories'>, texts: readonly string[]): Promise<Verdict[]> {
    const requests = texts.map((text): ChatRequest => ({
      model: this.model,
      input: { kind: 'messages', messages: [{ role: 'user', content: text }] },
      // A classifier should answer the same way twice.
      options: { maxTokens: VERDICT_MAX_TOKENS, temperature: 0 },
    }));
    try {
      return await this.chat.completeAll({ ...ctx, categories: ['moderation', 'chat'] }, requests, ({ content }) => this.verdictOf(content));
    } catch (err) {
      throw this.explainMissingModel(err);
    }
  }

  /** Throwing here fails the whole call (billed for what the guard generated, as one usage row). */
  private verdictOf(content: string): Verdict {
    const verdict = parseVerdict(content);
    if (!verdict) {
      throw new GatewayError(
        'backend_error',
        `The moderation model '${this.model}' did not answer with a Llama Guard verdict ("safe" or "unsafe"); set MODERATION_MODEL to a Llama Guard model.`,
      );
    }
    return verdict;
  }

  /** A missing guard model is an operator's setup step, so the error says exactly what to pull. */
  private explainMissingModel(err: unknown): unknown {
    if (!(err instanceof GatewayError) || err.code !== 'model_not_found') return err;
    const ollamaModel = this.table.getModel(this.model)?.ollamaModel ?? this.model;
    const explained = new GatewayError(
      'model_not_found',
      `The moderation model '${this.model}' is not available on Ollama: run \`ollama pull ${ollamaModel}\` on the Ollama host, or point MODERATION_MODEL at a guard model you have.`,
      { cause: err },
    );
    explained.recorded = err.recorded;
    return explained;
  }
}
