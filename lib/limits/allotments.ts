/**
 * Daily and monthly credit allotments of a key or an organisation.
 *
 * An allotment is a counter per holder and calendar period (`day:2024-01-19`, `month:2024-01`, UTC):
 * a new period is a new counter, so the reset at UTC midnight / the first of the month needs no job.
 * The counters live in SQLite next to the balance and move in the same transactions (db/store.ts):
 * the worst case is added at admission, the unused part given back at settle.
 */
import { GatewayError } from '../errors';
import { microToCredits } from '../pricing';
import type { Principal } from '../types';

export type AllotmentKind = 'daily' | 'monthly';

/** A counter a reservation holds: what settle (or a crash refund) has to correct. */
export interface AllotmentHold {
  /** `key:<id>` or `org:<id>`. */
  scope: string;
  /** `day:YYYY-MM-DD` or `month:YYYY-MM`. */
  period: string;
}

/** One allotment to check at admission. */
export interface AllotmentCheck extends AllotmentHold {
  holder: { kind: 'key'; id: number } | { kind: 'org'; id: string };
  kind: AllotmentKind;
  limitMicro: number;
  /** ISO start of the period: spend logged before a counter existed is counted from here. */
  periodStart: string;
  /** ISO time of the reset. */
  resetAt: string;
  /** Epoch ms of the admission (the injected clock), for Retry-After. */
  checkedAt: number;
}

/** The last second formatted: every rate-limited reply formats its reset time, mostly the same second. */
let lastSecond = NaN;
let lastIso = '';

/** ISO time without milliseconds, as the AimiChat document writes it (`2024-01-19T00:00:00Z`). */
export function isoSeconds(at: number | Date): string {
  const second = Math.floor(+at / 1000);
  if (second !== lastSecond) {
    // Date, toISOString and the replace: ~3 µs of every such reply in the profile, where it was.
    lastIso = new Date(second * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
    lastSecond = second;
  }
  return lastIso;
}

export interface Period {
  id: string;
  start: Date;
  resetAt: Date;
}

/** The UTC calendar period of `kind` that contains `at` (epoch ms). */
export function periodOf(kind: AllotmentKind, at: number): Period {
  const d = new Date(at);
  const y = d.getUTCFullYear();
  const m = d.getUTCMonth();
  if (kind === 'daily') {
    const start = new Date(Date.UTC(y, m, d.getUTCDate()));
    return { id: `day:${start.toISOString().slice(0, 10)}`, start, resetAt: new Date(Date.UTC(y, m, d.getUTCDate() + 1)) };
  }
  const start = new Date(Date.UTC(y, m, 1));
  return { id: `month:${start.toISOString().slice(0, 7)}`, start, resetAt: new Date(Date.UTC(y, m + 1, 1)) };
}

/** The allotments that apply to a principal's request at `at`: the key's own, then its organisation's. */
export function allotmentChecks(principal: Principal, at: number): AllotmentCheck[] {
  const limits = principal.limits;
  if (!limits) return [];
  const checks: AllotmentCheck[] = [];
  const holders = [
    { holder: { kind: 'key' as const, id: principal.keyId }, scope: `key:${principal.keyId}`, set: limits.key },
    { holder: { kind: 'org' as const, id: principal.orgId }, scope: `org:${principal.orgId}`, set: limits.org },
  ];
  for (const { holder, scope, set } of holders) {
    for (const [kind, limitMicro] of [['daily', set.dailyMicro], ['monthly', set.monthlyMicro]] as const) {
      if (limitMicro === null) continue;
      const period = periodOf(kind, at);
      checks.push({ holder, scope, period: period.id, kind, limitMicro, periodStart: period.start.toISOString(), resetAt: isoSeconds(period.resetAt), checkedAt: at });
    }
  }
  return checks;
}

/**
 * The refusal for a spent allotment, with AimiChat's `{limit, used, resetAt}` (in credits).
 * Retry-After points at the reset; x-should-retry: false still tells SDKs not to retry at once.
 */
export function quotaExceeded(check: AllotmentCheck, usedMicro: number): GatewayError {
  const label = check.kind === 'daily' ? 'Daily' : 'Monthly';
  return new GatewayError('quota_exceeded', `${label} credit limit reached`, {
    quota: { limit: microToCredits(check.limitMicro), used: microToCredits(usedMicro), resetAt: check.resetAt },
    retryAfterSeconds: Math.max(1, Math.ceil((Date.parse(check.resetAt) - check.checkedAt) / 1000)),
  });
}
