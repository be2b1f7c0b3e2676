/**
 * The admin CLI's commands, one entry each: the words that select it, its options, and what it does.
 */
import { creditsToMicro, microToCredits } from '../lib/pricing';
import { isKnownEncoding } from '../lib/tokens';
import type { ModelCategory } from '../lib/types';
import type { Store } from './store';

export class UsageError extends Error {}

export interface CommandContext {
  store: Store;
  args: string[];
  values: Record<string, string | boolean | undefined>;
  json: boolean;
  out(text: string): void;
}

type OptionSpec = Record<string, { type: 'string' | 'boolean' }>;

export interface Command {
  words: string[];
  usage: string;
  options: OptionSpec;
  run(ctx: CommandContext): void;
}

/** A fixed-width table; the JSON form carries the same rows. */
export function table(rows: Array<Record<string, unknown>>, columns: string[]): string {
  if (rows.length === 0) return '(none)';
  const cells = rows.map((r) => columns.map((c) => (r[c] === null || r[c] === undefined ? '-' : String(r[c]))));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((row) => (row[i] as string).length)));
  const line = (values: string[]) => values.map((v, i) => v.padEnd(widths[i] as number)).join('  ').trimEnd();
  return [line(columns), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n');
}

function print(ctx: CommandContext, value: unknown, human: string): void {
  ctx.out(ctx.json ? JSON.stringify(value, null, 2) : human);
}

function requiredString(ctx: CommandContext, name: string): string {
  const value = ctx.values[name];
  if (typeof value !== 'string' || value.trim() === '') throw new UsageError(`--${name} is required`);
  return value.trim();
}

function arg(ctx: CommandContext, index: number, name: string): string {
  const value = ctx.args[index];
  if (value === undefined || value === '') throw new UsageError(`<${name}> is required`);
  return value;
}

function credits(value: string, what: string): number {
  try {
    return creditsToMicro(value);
  } catch {
    throw new UsageError(`${what} must be a number of credits, got "${value}"`);
  }
}

function optionalCredits(ctx: CommandContext, name: string): number | undefined {
  const value = ctx.values[name];
  if (value === undefined) return undefined;
  const micro = credits(String(value), `--${name}`);
  if (micro < 0) throw new UsageError(`--${name} cannot be negative`);
  return micro;
}

const balanceOf = (micro: number | null): number | null => (micro === null ? null : microToCredits(micro));

function orgOrFail(store: Store, name: string) {
  const org = store.getOrgByName(name);
  if (!org) throw new Error(`no organisation named "${name}"`);
  return org;
}

const CATEGORIES: readonly ModelCategory[] = ['chat', 'embedding', 'moderation'];

export const COMMANDS: Command[] = [
  {
    words: ['keys', 'create'],
    usage: 'keys create --name N [--org O] [--credits C]',
    options: { name: { type: 'string' }, org: { type: 'string' }, credits: { type: 'string' } },
    run(ctx) {
      const name = requiredString(ctx, 'name');
      const balance = optionalCredits(ctx, 'credits');
      const orgName = typeof ctx.values.org === 'string' ? ctx.values.org : undefined;
      const created = ctx.store.createKey({
        name,
        ...(orgName !== undefined && { orgName }),
        ...(balance !== undefined && { balanceMicro: balance }),
      });
      const out = { client_key: created.clientKey, client_secret: created.clientSecret, api_key: created.apiKey, org: created.org.name };
      print(
        ctx,
        out,
        [
          `Created key "${name}" in organisation "${created.org.name}" (credits: ${balanceOf(created.org.balanceMicro) ?? 'unlimited'}).`,
          `  client_key     ${out.client_key}`,
          `  client_secret  ${out.client_secret}`,
          `  api_key        ${out.api_key}`,
          'The secret and the api_key are shown only now; the gateway keeps only their hashes.',
        ].join('\n'),
      );
    },
  },
  {
    words: ['keys', 'list'],
    usage: 'keys list',
    options: {},
    run(ctx) {
      const rows = ctx.store.listKeys().map((k) => ({
        client_key: k.clientKey,
        name: k.name,
        org: k.orgName,
        api_key: k.apiKeyPrefix,
        created_at: k.createdAt,
        revoked_at: k.revokedAt,
      }));
      print(ctx, rows, table(rows, ['client_key', 'name', 'org', 'api_key', 'created_at', 'revoked_at']));
    },
  },
  {
    words: ['keys', 'revoke'],
    usage: 'keys revoke <client_key>',
    options: {},
    run(ctx) {
      const clientKey = arg(ctx, 0, 'client_key');
      if (!ctx.store.revokeKey(clientKey)) throw new Error(`no active key ${clientKey}`);
      print(ctx, { revoked: clientKey }, `Revoked ${clientKey}. It is refused from the next request on.`);
    },
  },
  {
    words: ['credits', 'add'],
    usage: 'credits add <org> <amount>',
    options: {},
    run(ctx) {
      const org = orgOrFail(ctx.store, arg(ctx, 0, 'org'));
      const amount = credits(arg(ctx, 1, 'amount'), '<amount>');
      const updated = ctx.store.addCredits(org.id, amount);
      const balance = balanceOf(updated.balanceMicro);
      print(ctx, { org: org.name, credits: balance }, `${org.name}: ${balance} credits.`);
    },
  },
  {
    words: ['credits', 'show'],
    usage: 'credits show <org>',
    options: {},
    run(ctx) {
      const org = orgOrFail(ctx.store, arg(ctx, 0, 'org'));
      const balance = balanceOf(org.balanceMicro);
      print(ctx, { org: org.name, credits: balance }, `${org.name}: ${balance ?? 'unlimited'} credits.`);
    },
  },
  {
    words: ['models', 'set'],
    usage: 'models set <name> --ollama <model> [--input-cost X] [--output-cost Y] [--category chat|embedding|moderation] [--max-output-tokens N] [--tokenizer cl100k_base|o200k_base|…]',
    options: {
      ollama: { type: 'string' },
      'input-cost': { type: 'string' },
      'output-cost': { type: 'string' },
      category: { type: 'string' },
      'max-output-tokens': { type: 'string' },
      tokenizer: { type: 'string' },
    },
    run(ctx) {
      const name = arg(ctx, 0, 'name');
      const category = (ctx.values.category ?? 'chat') as ModelCategory;
      if (!CATEGORIES.includes(category)) throw new UsageError(`--category must be one of ${CATEGORIES.join(', ')}`);
      const maxOutput = ctx.values['max-output-tokens'];
      if (maxOutput !== undefined && !/^[1-9]\d*$/.test(String(maxOutput))) throw new UsageError('--max-output-tokens must be a positive integer');
      const tokenizer = ctx.values.tokenizer;
      if (tokenizer !== undefined && !isKnownEncoding(String(tokenizer))) throw new UsageError(`unknown --tokenizer "${String(tokenizer)}"`);
      const model = ctx.store.setModel({
        name,
        ollamaModel: requiredString(ctx, 'ollama'),
        category,
        inputMicroPer1k: optionalCredits(ctx, 'input-cost') ?? 0,
        outputMicroPer1k: optionalCredits(ctx, 'output-cost') ?? 0,
        maxOutputTokens: maxOutput === undefined ? null : Number(maxOutput),
        tokenizer: tokenizer === undefined ? null : String(tokenizer),
      });
      const row = modelRow(model);
      print(ctx, row, `Model "${name}" → Ollama "${model.ollamaModel}" (${category}; ${row.input_cost} / ${row.output_cost} credits per 1k tokens in / out).`);
    },
  },
  {
    words: ['models', 'list'],
    usage: 'models list',
    options: {},
    run(ctx) {
      const rows = ctx.store.listModels().map(modelRow);
      print(ctx, rows, table(rows, ['name', 'ollama', 'category', 'input_cost', 'output_cost', 'max_output_tokens', 'tokenizer']));
    },
  },
  {
    words: ['models', 'remove'],
    usage: 'models remove <name>',
    options: {},
    run(ctx) {
      const name = arg(ctx, 0, 'name');
      if (!ctx.store.removeModel(name)) throw new Error(`no model named "${name}"`);
      print(ctx, { removed: name }, `Removed model "${name}".`);
    },
  },
];

function modelRow(m: ReturnType<Store['listModels']>[number]) {
  return {
    name: m.name,
    ollama: m.ollamaModel,
    category: m.category,
    input_cost: microToCredits(m.inputMicroPer1k),
    output_cost: microToCredits(m.outputMicroPer1k),
    max_output_tokens: m.maxOutputTokens,
    tokenizer: m.tokenizer,
  };
}
