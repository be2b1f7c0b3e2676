/**
 * Money and limits for one request, shared by every kind of call (chat, embeddings, moderation):
 * the model allow-list, tokens per minute and the credit reservation before Ollama is called, and
 * exactly one settlement after, whatever way the request ends.
 */
import { GatewayError, toGatewayError } from './errors';
import type { Limits, ModelAllowance, TokenHold } from './limits/limits';
import { capCost, costOf, type Prices } from './pricing';
import type { Cost, ModelEntry, Principal, Usage } from './types';
import type { Reservation, UsageRecord } from '../db/store';
import type { AllotmentCheck } from './limits/allotments';

/** The part of the store metering uses: credits and the usage log. */
export interface Ledger {
  /** Throws quota_exceeded when an allotment is spent; undefined when the balance cannot cover the amount. */
  reserve(orgId: string, amountMicro: number, allotments?: readonly AllotmentCheck[]): Reservation | undefined;
  settle(reservation: Reservation | null, chargeMicro: number, usage: UsageRecord): void;
  recordUsage(usage: UsageRecord): void;
}

/** Who asks, for what: the part of a call's context that metering needs. */
export interface MeteredCall {
  principal: Principal;
  requestId: string;
  route: string;
}

export interface MeteringOptions {
  limits?: Limits;
  now?: () => number;
  /** Told about every settled request (metrics count tokens here). */
  onSettled?: (usage: UsageRecord) => void;
}

/** The worst case a request may use, for the reservation and the tokens-per-minute hold. */
export interface Estimate {
  /**
   * The prompt's worst case (see `reserveEstimate`). A function because it is a tiktoken pass over the
   * whole input, and admission asks for it only when it changes something (see `needsPromptEstimate`).
   */
  promptTokens: () => number;
  completionTokens: number;
}

/** Prompt counts come from tiktoken, not the model's own tokenizer: reserve with a margin, plus a little for the template. */
export function reserveEstimate(tiktokenCount: number): number {
  return Math.ceil(tiktokenCount * 1.25) + 16;
}

/** What a request that reached no model, or relayed nothing, has used. */
export const NOTHING_USED: Usage = Object.freeze({ promptTokens: 0, completionTokens: 0 });

/** Where a generation's end is accounted: an Admission itself, or a share of one (`SharedAdmission`). */
export interface Tab {
  /** The generation ended with Ollama's final counts; returns what they cost. */
  done(usage: Usage): Cost;
  /** See `Admission.fail`. */
  fail(err: unknown, clientLeft: boolean, usage?: Usage): GatewayError;
}

export class Metering {
  private readonly now: () => number;

  constructor(
    private readonly ledger: Ledger,
    private readonly options: MeteringOptions = {},
  ) {
    this.now = options.now ?? Date.now;
  }

  /** 403 when the key's allow-list lacks this public model name. Cheap: run it before resolving the model. */
  assertModelAllowed(principal: Principal, modelName: string): ModelAllowance {
    return this.options.limits?.assertModelAllowed(principal, modelName) ?? 'exact';
  }

  /**
   * Limits before money: tokens per minute, then the credit reservation (with the daily and monthly
   * allotments in the same transaction). A refusal here has cost nothing and reached no Ollama.
   */
  admit(call: MeteredCall, model: ModelEntry, worst: Estimate): Admission {
    const startedAt = this.now();
    const prices: Prices = { inputMicroPer1k: model.inputMicroPer1k, outputMicroPer1k: model.outputMicroPer1k };
    const promptTokens = this.needsPromptEstimate(call.principal, prices) ? worst.promptTokens() : 0;
    const worstCost = costOf({ promptTokens, completionTokens: worst.completionTokens }, prices);
    const tokenHold = this.options.limits?.admitTokens(call.principal, promptTokens + worst.completionTokens) ?? null;
    let reservation: Reservation | undefined;
    try {
      reservation = this.ledger.reserve(call.principal.orgId, worstCost.totalMicro, this.options.limits?.allotments(call.principal));
    } finally {
      if (!reservation) tokenHold?.commit(0);
    }
    if (!reservation) {
      throw new GatewayError('insufficient_credits', `Insufficient credits: this request may cost up to ${worstCost.totalMicro / 1e6} credits.`);
    }
    return new Admission(this.ledger, call, model, prices, reservation, tokenHold, startedAt, this.now, this.options.onSettled);
  }

  /**
   * The prompt estimate counts in two places only: a tokens-per-minute hold, and the cost of a priced
   * input (for a limited balance or an allotment). A free input without a token limit reserves the
   * same whatever the prompt, so the tiktoken pass is skipped. (An unlimited organisation with a
   * priced input still pays for the count: whether the balance is limited is only known in `reserve`.)
   */
  private needsPromptEstimate(principal: Principal, prices: Prices): boolean {
    if (prices.inputMicroPer1k > 0) return true;
    // The same test as Limits.admitTokens (a key or organisation tpm), which returns null otherwise.
    return this.options.limits !== undefined && (principal.limits?.key.tpm != null || principal.limits?.org.tpm != null);
  }
}

/** An admitted request: its reservation, settled exactly once. */
export class Admission implements Tab {
  private settled = false;

  constructor(
    private readonly ledger: Ledger,
    private readonly call: MeteredCall,
    private readonly model: ModelEntry,
    private readonly prices: Prices,
    private readonly reservation: Reservation,
    private readonly tokenHold: TokenHold | null,
    private readonly startedAt: number,
    private readonly now: () => number,
    private readonly onSettled: ((usage: UsageRecord) => void) | undefined,
  ) {}

  /** Whether money is at stake: then the output must stay within what was reserved for it. */
  get boundsOutput(): boolean {
    return this.reservation.id !== null && this.prices.outputMicroPer1k > 0;
  }

  /** What `usage` costs: list price for unlimited organisations (for the log), never past the reservation otherwise. */
  costOf(usage: Usage): Cost {
    return capCost(costOf(usage, this.prices), this.reservation.id === null ? Infinity : this.reservation.amountMicro);
  }

  /**
   * Charges `usage`, releases the rest of the reservation and writes the usage row, in one transaction.
   * Later calls do nothing, so every exit path may call it. Returns what was charged.
   */
  settle(usage: Usage, status: number, errorCode: string | null): Cost {
    const cost = this.costOf(usage);
    if (this.settled) return cost;
    this.settled = true;
    this.tokenHold?.commit(usage.promptTokens + usage.completionTokens);
    const record: UsageRecord = {
      requestId: this.call.requestId,
      route: this.call.route,
      principal: this.call.principal,
      model: this.model.name,
      promptTokens: usage.promptTokens,
      completionTokens: usage.completionTokens,
      costMicro: cost.totalMicro,
      status,
      errorCode,
      latencyMs: this.now() - this.startedAt,
    };
    this.ledger.settle(this.reservation, cost.totalMicro, record);
    this.onSettled?.(record);
    return cost;
  }

  /** Settles a request that ended well. */
  done(usage: Usage): Cost {
    return this.settle(usage, 200, null);
  }

  /**
   * Settles a request that failed, billing `usage` (what was relayed before it broke): as 499
   * `client_closed` when the client left — whatever broke as a result, it is not Ollama's fault —
   * else with the error's own status and code. Returns the error to throw, marked as logged so the
   * HTTP edge does not log it again.
   */
  fail(err: unknown, clientLeft: boolean, usage: Usage = NOTHING_USED): GatewayError {
    const error = clientLeft && !(err instanceof GatewayError && err.recorded) ? clientLeftError(err) : toGatewayError(err);
    this.settle(usage, clientLeft ? 499 : error.status, clientLeft ? 'client_closed' : error.code);
    error.recorded = true;
    return error;
  }

  /** Several generations under this one admission (e.g. moderation's inputs); see `SharedAdmission`. */
  shared(): SharedAdmission {
    return new SharedAdmission(this);
  }
}

/**
 * Several generations under one admission: each one that ends well adds its usage, and the admission
 * is settled once — with the sum — by `close()` after the last, or by the first failure (which bills
 * what the earlier ones used plus what the failing one relayed). One reservation, one usage row.
 */
export class SharedAdmission implements Tab {
  private used: Usage = NOTHING_USED;

  constructor(private readonly admission: Admission) {}

  /** Adds a generation's usage; returns its own cost (for its `done` event; the bill comes at `close`). */
  done(usage: Usage): Cost {
    this.used = sumOf(this.used, usage);
    return this.admission.costOf(usage);
  }

  fail(err: unknown, clientLeft: boolean, usage: Usage = NOTHING_USED): GatewayError {
    return this.admission.fail(err, clientLeft, sumOf(this.used, usage));
  }

  /** Settles the whole: what every generation used, as one request that ended well. */
  close(): Cost {
    return this.admission.done(this.used);
  }
}

function sumOf(a: Usage, b: Usage): Usage {
  return { promptTokens: a.promptTokens + b.promptTokens, completionTokens: a.completionTokens + b.completionTokens };
}

/** The error of a request whose client went away: nobody reads it, but it must not look like a gateway bug. */
function clientLeftError(cause: unknown): GatewayError {
  return new GatewayError('backend_error', 'The client left before the answer was complete.', { cause });
}
