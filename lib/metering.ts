/**
 * Money and limits for one request, shared by every kind of call (chat, embeddings, moderation):
 * the model allow-list, tokens per minute and the credit reservation before Ollama is called, and
 * exactly one settlement after, whatever way the request ends.
 */
import { GatewayError } from './errors';
import type { Limits, TokenHold } from './limits/limits';
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
  promptTokens: number;
  completionTokens: number;
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
  assertModelAllowed(principal: Principal, modelName: string): void {
    this.options.limits?.assertModelAllowed(principal, modelName);
  }

  /**
   * Limits before money: tokens per minute, then the credit reservation (with the daily and monthly
   * allotments in the same transaction). A refusal here has cost nothing and reached no Ollama.
   */
  admit(call: MeteredCall, model: ModelEntry, worst: Estimate): Admission {
    const startedAt = this.now();
    const prices: Prices = { inputMicroPer1k: model.inputMicroPer1k, outputMicroPer1k: model.outputMicroPer1k };
    const worstCost = costOf(worst, prices);
    const tokenHold = this.options.limits?.admitTokens(call.principal, worst.promptTokens + worst.completionTokens) ?? null;
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
}

/** An admitted request: its reservation, settled exactly once. */
export class Admission {
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
}
