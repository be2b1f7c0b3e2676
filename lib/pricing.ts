/**
 * Integer credit arithmetic. Balances and prices never touch floating point once parsed:
 * 1 credit = 1,000,000 micro-credits, and a price is micro-credits per 1,000 tokens.
 */
import type { Cost, Usage } from './types';

export const MICRO_PER_CREDIT = 1_000_000;

export interface Prices {
  /** Micro-credits per 1,000 prompt tokens. */
  inputMicroPer1k: number;
  /** Micro-credits per 1,000 completion tokens. */
  outputMicroPer1k: number;
}

/** Parses a decimal credit amount such as "12.5" or 0.002 into micro-credits, exactly. */
export function creditsToMicro(credits: number | string): number {
  const text = typeof credits === 'number' ? credits.toFixed(6) : credits.trim();
  const match = /^(-?)(\d+)(?:\.(\d{0,6})\d*)?$/.exec(text);
  if (!match) throw new RangeError(`not a credit amount: ${String(credits)}`);
  const [, sign, whole, frac = ''] = match;
  const micro = Number(whole) * MICRO_PER_CREDIT + Number(frac.padEnd(6, '0'));
  if (!Number.isSafeInteger(micro)) throw new RangeError(`credit amount out of range: ${String(credits)}`);
  return sign === '-' ? -micro : micro;
}

/** Micro-credits back to credits for display (a float is fine at the edge, never in the ledger). */
export function microToCredits(micro: number): number {
  return micro / MICRO_PER_CREDIT;
}

/** Cost of `tokens` at `pricePer1k`, rounded up so that a non-zero price never bills zero. */
function tokenCost(tokens: number, microPer1k: number): number {
  return Math.ceil((tokens * microPer1k) / 1000);
}

export function costOf(usage: Usage, prices: Prices): Cost {
  const inputMicro = tokenCost(usage.promptTokens, prices.inputMicroPer1k);
  const outputMicro = tokenCost(usage.completionTokens, prices.outputMicroPer1k);
  return { inputMicro, outputMicro, totalMicro: inputMicro + outputMicro };
}

/**
 * Caps a cost at what was reserved for it. Ollama's tokenizer may count a prompt a little higher than
 * our estimate; the caller is never billed more than was set aside (the balance can't go negative),
 * and the output share is trimmed first because it was the bound the request itself chose.
 */
export function capCost(cost: Cost, reservedMicro: number): Cost {
  if (cost.totalMicro <= reservedMicro) return cost;
  const inputMicro = Math.min(cost.inputMicro, reservedMicro);
  const outputMicro = reservedMicro - inputMicro;
  return { inputMicro, outputMicro, totalMicro: reservedMicro };
}

export const ZERO_COST: Cost = Object.freeze({ inputMicro: 0, outputMicro: 0, totalMicro: 0 });
