/**
 * The load generator: N requests over C keep-alive connections, with per-request latency, and for
 * streams the time to first data, the gaps between data chunks, and — when the double stamps its
 * tokens with the time it wrote them (`stampTokens`) — each token's transit time to this client.
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
  /**
   * Streams from a stamping double only: from the double writing a token to this client reading it
   * (the same monotonic clock in both processes). Direct, this is the machine's own delivery time;
   * through a proxy or the gateway, the difference is what the hop added to each token.
   */
  transitP50Ms?: number;
  transitP99Ms?: number;
  transitMaxMs?: number;
  /** The same once every stream has had its first data (see `steadyGapP99Ms`). */
  steadyTransitP99Ms?: number;
  chunks?: number;
}

/** A token's stamp in whatever framing carries it (NDJSON or SSE): `~t<ns>~`. */
const STAMP = /~t(\d+)~/g;

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
  const transits: number[] = [];
  const transitEnds: bigint[] = [];
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
        let carry = '';
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
            // A stamp may be cut between two reads: the tail after the last whole one is kept.
            const text = carry + chunk.toString('latin1');
            let end = 0;
            for (const match of text.matchAll(STAMP)) {
              transits.push(ms(BigInt(match[1] as string), now));
              transitEnds.push(now);
              end = match.index + match[0].length;
            }
            carry = text.slice(Math.max(end, text.length - 40));
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
    if (transits.length > 0) {
      const steadyTransits = transits.filter((_, i) => (transitEnds[i] as bigint) > lastFirstData).sort((a, b) => a - b);
      transits.sort((a, b) => a - b);
      Object.assign(stats, {
        transitP50Ms: percentile(transits, 50),
        transitP99Ms: percentile(transits, 99),
        transitMaxMs: transits[transits.length - 1],
        steadyTransitP99Ms: percentile(steadyTransits, 99),
      });
    }
  }
  return stats;
}
