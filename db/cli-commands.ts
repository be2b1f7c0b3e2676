/**
 * The admin CLI's commands, one entry each: the words that select it, its options, and what it does.
 */
import { creditsToMicro, microToCredits } from '../lib/pricing';
import { isKnownEncoding } from '../lib/tokens';
import type { ModelCategory } from '../lib/types';
import type { KeyLimitChanges, LimitChanges, Store } from './store';
import { parseSince, usageReport } from './usage-report';

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
  // The ledger counts micro-credits: a seventh decimal would be dropped without a word.
  if (/\.\d{6}0*[1-9]/.test(value.trim())) throw new UsageError(`${what} has more than 6 decimals (one micro-credit is the smallest amount), got "${value}"`);
  try {
    return creditsToMicro(value);
  } catch {
    throw new UsageError(`${what} must be a number of credits, got "${value}"`);
  }
}

/** A count given on the command line: a positive integer no larger than `max`. */
function positiveInteger(value: string, what: string, max: number): number {
  const n = Number(value);
  if (!/^[1-9]\d*$/.test(value) || n > max) throw new UsageError(`${what} must be a positive integer up to ${max.toLocaleString('en-US')}, got "${value}"`);
  return n;
}

/** The largest per-minute limit (beyond it a limit would be no limit, and sums stop being exact). */
const MAX_RATE = 1_000_000_000_000;
/** The largest output cap: far above any model's context, and far below where a reservation's arithmetic stops being exact. */
const MAX_OUTPUT_TOKENS = 100_000_000;
/** The largest figure for an image (the largest vision models spend a few thousand a tile). */
const MAX_IMAGE_TOKENS = 1_000_000;

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

/** The limit options shared by `keys create` and `orgs set`. */
const LIMIT_OPTIONS: OptionSpec = {
  rpm: { type: 'string' },
  tpm: { type: 'string' },
  'daily-credits': { type: 'string' },
  'monthly-credits': { type: 'string' },
};

/** A per-minute limit: a positive integer, or `none` to remove it. */
function optionalRate(ctx: CommandContext, name: string): number | null | undefined {
  const value = ctx.values[name];
  if (value === undefined) return undefined;
  if (value === 'none') return null;
  if (!/^[1-9]\d*$/.test(String(value))) throw new UsageError(`--${name} must be a positive integer or "none"`);
  return positiveInteger(String(value), `--${name}`, MAX_RATE);
}

function limitChanges(ctx: CommandContext): LimitChanges {
  const changes: LimitChanges = {};
  const rpm = optionalRate(ctx, 'rpm');
  const tpm = optionalRate(ctx, 'tpm');
  const daily = ctx.values['daily-credits'] === 'none' ? null : optionalCredits(ctx, 'daily-credits');
  const monthly = ctx.values['monthly-credits'] === 'none' ? null : optionalCredits(ctx, 'monthly-credits');
  if (rpm !== undefined) changes.rpm = rpm;
  if (tpm !== undefined) changes.tpm = tpm;
  if (daily !== undefined) changes.dailyMicro = daily;
  if (monthly !== undefined) changes.monthlyMicro = monthly;
  return changes;
}

function keyLimitChanges(ctx: CommandContext): KeyLimitChanges {
  const changes: KeyLimitChanges = limitChanges(ctx);
  const models = ctx.values.models;
  if (models !== undefined) {
    const list = String(models).split(',').map((m) => m.trim()).filter(Boolean);
    if (list.length === 0) throw new UsageError('--models needs at least one model name');
    changes.allowedModels = list;
  }
  const expires = ctx.values.expires;
  if (expires !== undefined) {
    const at = Date.parse(String(expires));
    if (Number.isNaN(at)) throw new UsageError(`--expires must be an ISO time, got "${String(expires)}"`);
    changes.expiresAt = new Date(at).toISOString();
  }
  return changes;
}

/** Limits for display and JSON: credits, not micro-credits; only the ones that are set. */
function describeLimits(changes: KeyLimitChanges): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (changes.rpm !== undefined) out.rpm = changes.rpm;
  if (changes.tpm !== undefined) out.tpm = changes.tpm;
  if (changes.dailyMicro !== undefined) out.daily_credits = balanceOf(changes.dailyMicro);
  if (changes.monthlyMicro !== undefined) out.monthly_credits = balanceOf(changes.monthlyMicro);
  if (changes.allowedModels !== undefined) out.models = changes.allowedModels;
  if (changes.expiresAt !== undefined) out.expires = changes.expiresAt;
  return out;
}

const human = (limits: Record<string, unknown>): string =>
  Object.entries(limits)
    .map(([k, v]) => `${k} ${Array.isArray(v) ? v.join(',') : (v ?? 'none')}`)
    .join(', ');

export const COMMANDS: Command[] = [
  {
    words: ['keys', 'create'],
    usage: 'keys create --name N [--org O] [--credits C] [--rpm N] [--tpm N] [--daily-credits C] [--monthly-credits C] [--models a,b] [--expires ISO]',
    options: {
      name: { type: 'string' },
      org: { type: 'string' },
      credits: { type: 'string' },
      ...LIMIT_OPTIONS,
      models: { type: 'string' },
      expires: { type: 'string' },
    },
    run(ctx) {
      const name = requiredString(ctx, 'name');
      const balance = optionalCredits(ctx, 'credits');
      const limits = keyLimitChanges(ctx);
      const orgName = typeof ctx.values.org === 'string' ? ctx.values.org : undefined;
      const created = ctx.store.createKey({
        name,
        ...(orgName !== undefined && { orgName }),
        ...(balance !== undefined && { balanceMicro: balance }),
      });
      const described = describeLimits(limits);
      if (Object.keys(described).length > 0) ctx.store.setKeyLimits(created.clientKey, limits);
      const out = {
        client_key: created.clientKey,
        client_secret: created.clientSecret,
        api_key: created.apiKey,
        org: created.org.name,
        ...(Object.keys(described).length > 0 && { limits: described }),
      };
      print(
        ctx,
        out,
        [
          `Created key "${name}" in organisation "${created.org.name}" (credits: ${balanceOf(created.org.balanceMicro) ?? 'unlimited'}).`,
          `  client_key     ${out.client_key}`,
          `  client_secret  ${out.client_secret}`,
          `  api_key        ${out.api_key}`,
          ...(out.limits ? [`  limits         ${human(out.limits)}`] : []),
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
    words: ['orgs', 'set'],
    usage: 'orgs set <org> [--credits C] [--rpm N] [--tpm N] [--daily-credits C] [--monthly-credits C]   (a limit of "none" removes it)',
    options: { credits: { type: 'string' }, ...LIMIT_OPTIONS },
    run(ctx) {
      const org = orgOrFail(ctx.store, arg(ctx, 0, 'org'));
      const changes = limitChanges(ctx);
      const balance = ctx.values.credits === 'none' ? null : optionalCredits(ctx, 'credits');
      if (Object.keys(changes).length === 0 && balance === undefined) throw new UsageError('nothing to set');
      ctx.store.db.transaction(() => {
        if (balance !== undefined) ctx.store.setBalance(org.id, balance);
        ctx.store.setOrgLimits(org.id, changes);
      })();
      const out = { org: org.name, ...(balance !== undefined && { credits: balanceOf(balance) }), ...describeLimits(changes) };
      const { org: _name, ...shown } = out;
      print(ctx, out, `${org.name}: ${human(shown)}.`);
    },
  },
  {
    words: ['usage'],
    usage: 'usage [--org O] [--key CLIENT_KEY] [--since ISO|30m|24h|7d]',
    options: { org: { type: 'string' }, key: { type: 'string' }, since: { type: 'string' } },
    run(ctx) {
      const orgName = ctx.values.org;
      const clientKey = ctx.values.key;
      const sinceText = ctx.values.since;
      const since = typeof sinceText === 'string' ? parseSince(sinceText) : undefined;
      if (typeof sinceText === 'string' && since === undefined) throw new UsageError(`--since must be an ISO time or a span such as 24h, got "${sinceText}"`);
      const orgId = typeof orgName === 'string' ? orgOrFail(ctx.store, orgName).id : undefined;
      let keyId: number | undefined;
      if (typeof clientKey === 'string') {
        keyId = ctx.store.keyIdOf(clientKey);
        if (keyId === undefined) throw new Error(`no key ${clientKey}`);
      }
      const report = usageReport(ctx.store.db, {
        ...(orgId !== undefined && { orgId }),
        ...(keyId !== undefined && { keyId }),
        ...(since !== undefined && { since }),
      });
      const rowColumns = ['time', 'org', 'key', 'model', 'prompt_tokens', 'completion_tokens', 'cost', 'status', 'error', 'latency_ms'];
      const totalColumns = ['model', 'requests', 'prompt_tokens', 'completion_tokens', 'cost'];
      print(ctx, report, `${table(report.rows as unknown as Array<Record<string, unknown>>, rowColumns)}\n\nTotals per model\n${table(report.totals as unknown as Array<Record<string, unknown>>, totalColumns)}`);
    },
  },
  {
    words: ['models', 'set'],
    usage: 'models set <name> --ollama <model> [--input-cost X] [--output-cost Y] [--category chat|embedding|moderation] [--max-output-tokens N] [--tokenizer cl100k_base|o200k_base|…] [--image-tokens N]',
    options: {
      ollama: { type: 'string' },
      'input-cost': { type: 'string' },
      'output-cost': { type: 'string' },
      category: { type: 'string' },
      'max-output-tokens': { type: 'string' },
      tokenizer: { type: 'string' },
      'image-tokens': { type: 'string' },
    },
    run(ctx) {
      const name = arg(ctx, 0, 'name');
      const category = (ctx.values.category ?? 'chat') as ModelCategory;
      if (!CATEGORIES.includes(category)) throw new UsageError(`--category must be one of ${CATEGORIES.join(', ')}`);
      const maxOutput = ctx.values['max-output-tokens'];
      const maxOutputTokens = maxOutput === undefined ? null : positiveInteger(String(maxOutput), '--max-output-tokens', MAX_OUTPUT_TOKENS);
      const imageTokensValue = ctx.values['image-tokens'];
      // 0 is allowed: a model that takes no images, or one whose images the operator does not charge for.
      const imageTokens = imageTokensValue === undefined ? null : /^0+$/.test(String(imageTokensValue)) ? 0 : positiveInteger(String(imageTokensValue), '--image-tokens', MAX_IMAGE_TOKENS);
      const tokenizer = ctx.values.tokenizer;
      if (tokenizer !== undefined && !isKnownEncoding(String(tokenizer))) throw new UsageError(`unknown --tokenizer "${String(tokenizer)}"`);
      const model = ctx.store.setModel({
        name,
        ollamaModel: requiredString(ctx, 'ollama'),
        category,
        inputMicroPer1k: optionalCredits(ctx, 'input-cost') ?? 0,
        outputMicroPer1k: optionalCredits(ctx, 'output-cost') ?? 0,
        maxOutputTokens,
        tokenizer: tokenizer === undefined ? null : String(tokenizer),
        imageTokens,
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
      print(ctx, rows, table(rows, ['name', 'ollama', 'category', 'input_cost', 'output_cost', 'max_output_tokens', 'tokenizer', 'image_tokens']));
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
    image_tokens: m.imageTokens,
  };
}
