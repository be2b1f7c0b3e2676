/**
 * Per-request admission by a principal's limits: expiry, requests per minute (at authentication),
 * the model allow-list and tokens per minute (in the core, before credits are reserved), and which
 * credit allotments the reservation must hold. The limits themselves come fresh from SQLite with the
 * principal on every request, so a change made with the CLI applies from the next request on.
 */
import { sameModel } from '../backends/pool';
import { GatewayError } from '../errors';
import type { Principal } from '../types';
import { allotmentChecks, isoSeconds, type AllotmentCheck } from './allotments';
import { RateLimiter, type LimitSpec, type WindowState } from './rate-limiter';

/** How a key's allow-list names a requested model (Limits.assertModelAllowed). */
export type ModelAllowance = 'exact' | 'spelling';

/** The refusal of a model a key's allow-list does not name. */
export function modelForbidden(model: string): GatewayError {
  return new GatewayError('forbidden', `This key may not use the model '${model}'.`, { param: 'model' });
}

export interface LimitsOptions {
  /** The clock (epoch ms); tests move it to cross minute windows and UTC midnight. */
  now?: () => number;
}

/** Tokens set aside in the TPM counters at admission; `commit` replaces the estimate with the real count. */
export interface TokenHold {
  commit(actualTokens: number): void;
}

type Metric = 'rpm' | 'tpm';

function specsFor(principal: Principal, metric: Metric): Array<LimitSpec & { holder: string }> {
  const specs: Array<LimitSpec & { holder: string }> = [];
  const key = principal.limits?.key[metric];
  const org = principal.limits?.org[metric];
  if (key != null) specs.push({ key: `key:${principal.keyId}:${metric}`, limit: key, holder: 'this key' });
  if (org != null) specs.push({ key: `org:${principal.orgId}:${metric}`, limit: org, holder: `organisation "${principal.orgName}"` });
  return specs;
}

/** The X-RateLimit-* headers of the AimiChat document for one counter. */
export function rateLimitHeaders(state: WindowState): Record<string, string> {
  return {
    'X-RateLimit-Limit': String(state.limit),
    'X-RateLimit-Remaining': String(state.remaining),
    'X-RateLimit-Reset': isoSeconds(state.resetAt),
  };
}

/** The counter closest to refusing: fewest remaining, then the smaller limit. */
function tightest(states: readonly WindowState[]): WindowState | undefined {
  return [...states].sort((a, b) => a.remaining - b.remaining || a.limit - b.limit)[0];
}

export class Limits {
  readonly now: () => number;
  readonly limiter: RateLimiter;

  constructor(options: LimitsOptions = {}) {
    this.now = options.now ?? Date.now;
    this.limiter = new RateLimiter(this.now);
  }

  /** 401 once the key's expiry time has passed (checked per request, like revocation). */
  assertNotExpired(principal: Principal): void {
    if (principal.expiresAt != null && Date.parse(principal.expiresAt) <= this.now()) {
      throw new GatewayError('unauthenticated', `This key expired at ${principal.expiresAt}.`);
    }
  }

  /**
   * Counts one request against the key's and the organisation's requests per minute. Returns the
   * X-RateLimit-* headers of the tightest counter, or none when no request limit is configured.
   */
  admitRequest(principal: Principal): Record<string, string> {
    const specs = specsFor(principal, 'rpm');
    if (specs.length === 0) return {};
    const result = this.limiter.take(specs, 1);
    if (!result.ok) {
      const holder = specs.find((s) => s.key === result.blocking.key)?.holder ?? 'this key';
      throw this.refusal(result.blocking, `Rate limit reached: ${result.blocking.limit} requests per minute for ${holder}.`);
    }
    const state = tightest(result.states) as WindowState;
    return rateLimitHeaders(state);
  }

  /**
   * 403 when the key's allow-list cannot name this model. `'exact'` when it names it as written (or
   * there is no list); `'spelling'` when an entry names it only in another case or with or without
   * `:latest`, which Ollama takes as the same model: the catalog then decides
   * (ModelCatalog.resolveAllowed). Cheap, and run before resolving: a key learns nothing of models it
   * may not use.
   */
  assertModelAllowed(principal: Principal, model: string): ModelAllowance {
    const allowed = principal.allowedModels;
    if (allowed == null || allowed.includes(model)) return 'exact';
    if (allowed.some((entry) => sameModel(entry, model))) return 'spelling';
    throw modelForbidden(model);
  }

  /**
   * Sets `estimate` tokens (prompt estimate + output bound) aside in the tokens-per-minute counters,
   * or refuses with 429. Null when no token limit applies.
   */
  admitTokens(principal: Principal, estimate: number): TokenHold | null {
    const specs = specsFor(principal, 'tpm');
    if (specs.length === 0) return null;
    const result = this.limiter.take(specs, estimate);
    if (!result.ok) {
      const holder = specs.find((s) => s.key === result.blocking.key)?.holder ?? 'this key';
      const tooLarge = estimate > result.blocking.limit;
      throw this.refusal(
        result.blocking,
        tooLarge
          ? `This request may use up to ${estimate} tokens, more than the limit of ${result.blocking.limit} tokens per minute for ${holder}; send a shorter prompt (or fewer images) or lower max_tokens.`
          : `Rate limit reached: ${result.blocking.limit} tokens per minute for ${holder}.`,
        false,
      );
    }
    const keys = specs.map((s) => s.key);
    let committed = false;
    return {
      commit: (actualTokens: number) => {
        if (committed) return;
        committed = true;
        this.limiter.adjust(keys, result.windowStart, actualTokens - estimate);
      },
    };
  }

  /** The credit allotments a reservation for this principal must fit in and hold. */
  allotments(principal: Principal): AllotmentCheck[] {
    return allotmentChecks(principal, this.now());
  }

  private refusal(state: WindowState, message: string, withHeaders = true): GatewayError {
    return new GatewayError('rate_limited', message, {
      retryAfterSeconds: Math.max(1, Math.ceil((state.resetAt - this.now()) / 1000)),
      ...(withHeaders && { headers: rateLimitHeaders(state) }),
    });
  }
}
