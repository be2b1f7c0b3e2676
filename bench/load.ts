/**
 * The load generator: N requests over C keep-alive connections, with per-request latency, and for
 * streams the time to first data and the gaps between data chunks.
 */
import { Pool } from 'undici';

export interface Target {
  url: string;
  path: string;
  headers: Record<string, string>;
  body: string;
}

export interface RunStats {
  requests: number;
  errors: number;
  seconds: number;
  rps: number;
  meanMs: number;
  p50Ms: number;
  p99Ms: number;
  /** Streams only: time to the first body chunk. */
  ttfbP50Ms?: number;
  /** Streams only: gaps between consecutive body chunks. */
  gapP50Ms?: number;
  gapP99Ms?: number;
  gapMaxMs?: number;
  /**
   * Streams only: the same gaps once every stream has had its first data, i.e. without the start,
   * where all the streams' requests arrive at once and their admissions share the CPU with relaying.
   */
  steadyGapP99Ms?: number;
  steadyGapMaxMs?: number;
  chunks?: number;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

const ms = (from: bigint, to: bigint) => Number(to - from) / 1e6;

export async function run(target: Target, connections: number, total: number, stream = false): Promise<RunStats> {
  const pool = new Pool(target.url, { connections, pipelining: 1, headersTimeout: 0, bodyTimeout: 0 });
  const latencies: number[] = [];
  const ttfbs: number[] = [];
  const gaps: number[] = [];
  /** When each gap ended, and when the last stream got its first data, to tell the start from the rest. */
  const gapEnds: bigint[] = [];
  let lastFirstData = 0n;
  let errors = 0;
  let issued = 0;
  let chunks = 0;
  const started = process.hrtime.bigint();
  const worker = async () => {
    while (issued < total) {
      issued++;
      const t0 = process.hrtime.bigint();
      try {
        const res = await pool.request({ method: 'POST', path: target.path, headers: target.headers, body: target.body });
        let last: bigint | null = null;
        for await (const chunk of res.body) {
          const now = process.hrtime.bigint();
          if (stream) {
            if (last === null) {
              ttfbs.push(ms(t0, now));
              if (now > lastFirstData) lastFirstData = now;
            } else {
              gaps.push(ms(last, now));
              gapEnds.push(now);
            }
            chunks++;
          }
          last = now;
          void chunk;
        }
        if (res.statusCode !== 200) errors++;
      } catch {
        errors++;
      }
      latencies.push(ms(t0, process.hrtime.bigint()));
    }
  };
  await Promise.all(Array.from({ length: connections }, worker));
  const seconds = ms(started, process.hrtime.bigint()) / 1000;
  await pool.close();
  latencies.sort((a, b) => a - b);
  const stats: RunStats = {
    requests: latencies.length,
    errors,
    seconds,
    rps: latencies.length / seconds,
    meanMs: latencies.reduce((s, x) => s + x, 0) / latencies.length,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
  };
  if (stream) {
    const steady = gaps.filter((_, i) => (gapEnds[i] as bigint) > lastFirstData).sort((a, b) => a - b);
    ttfbs.sort((a, b) => a - b);
    gaps.sort((a, b) => a - b);
    Object.assign(stats, {
      ttfbP50Ms: percentile(ttfbs, 50),
      gapP50Ms: percentile(gaps, 50),
      gapP99Ms: percentile(gaps, 99),
      gapMaxMs: gaps[gaps.length - 1] ?? NaN,
      steadyGapP99Ms: percentile(steady, 99),
      steadyGapMaxMs: steady[steady.length - 1] ?? NaN,
      chunks,
    });
  }
  return stats;
}
