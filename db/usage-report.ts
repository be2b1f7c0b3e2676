/**
 * The usage log as an operator reads it: one row per request (refusals and failures included) and
 * totals per model, filtered by organisation, key and start time. Read-only; the CLI prints it.
 */
import type Database from 'better-sqlite3';
import { microToCredits } from '../lib/pricing';

export interface UsageFilter {
  orgId?: string;
  keyId?: number;
  /** ISO time; rows at or after it. */
  since?: string;
}

export interface UsageReportRow {
  time: string;
  org: string | null;
  key: string | null;
  model: string | null;
  prompt_tokens: number;
  completion_tokens: number;
  /** Credits. */
  cost: number;
  status: number;
  error: string | null;
  latency_ms: number;
}

export interface ModelTotal {
  model: string | null;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  cost: number;
}

export interface UsageReport {
  rows: UsageReportRow[];
  totals: ModelTotal[];
}

interface RawRow extends Omit<UsageReportRow, 'cost'> {
  cost_micro: number;
}

export function usageReport(db: Database.Database, filter: UsageFilter): UsageReport {
  const where: string[] = [];
  const params: Record<string, string | number> = {};
  if (filter.orgId !== undefined) {
    where.push('u.org_id = @orgId');
    params.orgId = filter.orgId;
  }
  if (filter.keyId !== undefined) {
    where.push('u.key_id = @keyId');
    params.keyId = filter.keyId;
  }
  if (filter.since !== undefined) {
    where.push('u.ts >= @since');
    params.since = filter.since;
  }
  const raw = db
    .prepare<Record<string, string | number>, RawRow>(
      `SELECT u.ts AS time, o.name AS org, k.client_key AS key, u.model, u.prompt_tokens, u.completion_tokens,
              u.cost_micro, u.status, u.error_code AS error, u.latency_ms
       FROM usage u LEFT JOIN orgs o ON o.id = u.org_id LEFT JOIN keys k ON k.id = u.key_id
       ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY u.ts, u.id`,
    )
    .all(params);

  // Totals are summed in micro-credits and converted once, so they are exact.
  const byModel = new Map<string | null, ModelTotal & { costMicro: number }>();
  for (const r of raw) {
    const t = byModel.get(r.model) ?? { model: r.model, requests: 0, prompt_tokens: 0, completion_tokens: 0, cost: 0, costMicro: 0 };
    t.requests += 1;
    t.prompt_tokens += r.prompt_tokens;
    t.completion_tokens += r.completion_tokens;
    t.costMicro += r.cost_micro;
    byModel.set(r.model, t);
  }
  const totals = [...byModel.values()]
    .map(({ costMicro, ...t }) => ({ ...t, cost: microToCredits(costMicro) }))
    .sort((a, b) => String(a.model).localeCompare(String(b.model)));
  const rows = raw.map(({ cost_micro, ...r }) => ({ ...r, cost: microToCredits(cost_micro) }));
  return { rows, totals };
}

/** `--since`: an ISO date or time, or a span back from now such as `30m`, `24h`, `7d`. */
export function parseSince(text: string, now: number = Date.now()): string | undefined {
  const span = /^(\d+)([mhd])$/.exec(text.trim());
  if (span) {
    const unit = { m: 60_000, h: 3_600_000, d: 86_400_000 }[span[2] as 'm' | 'h' | 'd'];
    return new Date(now - Number(span[1]) * unit).toISOString();
  }
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : new Date(at).toISOString();
}
