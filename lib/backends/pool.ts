/**
 * The Ollama hosts behind the gateway, and which models each one has.
 *
 * The core asks the pool for a lease on a host that serves a model; the lease is released when the
 * request ends. Model lists come from /api/tags, cached for a short while and refreshed on a miss.
 */
import { GatewayError } from '../errors';
import type { Backend, BackendModel } from './types';

export interface Lease {
  backend: Backend;
  release(): void;
}

export interface BackendPoolOptions {
  /** How long a host's model list is trusted before it is fetched again. */
  modelTtlMs: number;
  now?: () => number;
}

interface HostState {
  backend: Backend;
  models: BackendModel[];
  fetchedAt: number;
  inFlight: number;
  lastError: string | null;
}

/** Ollama accepts `llama3.2` for `llama3.2:latest`; so does the gateway. */
export function sameModel(listed: string, asked: string): boolean {
  return listed === asked || listed === `${asked}:latest`;
}

export class BackendPool {
  private readonly hosts: HostState[];
  private readonly options: Required<BackendPoolOptions>;

  constructor(backends: Backend[], options: BackendPoolOptions = { modelTtlMs: 10_000 }) {
    if (backends.length === 0) throw new Error('at least one Ollama host is needed');
    this.hosts = backends.map((backend) => ({ backend, models: [], fetchedAt: -Infinity, inFlight: 0, lastError: null }));
    this.options = { now: Date.now, ...options };
  }

  get backends(): Backend[] {
    return this.hosts.map((h) => h.backend);
  }

  /** Every model any reachable host has, once per name. */
  async models(): Promise<BackendModel[]> {
    await Promise.all(this.hosts.map((h) => this.refresh(h, false)));
    const seen = new Map<string, BackendModel>();
    for (const host of this.hosts) for (const m of host.models) if (!seen.has(m.name)) seen.set(m.name, m);
    return [...seen.values()];
  }

  /** Whether some host has `model`, refreshing stale or missing lists first. */
  async hasModel(model: string): Promise<boolean> {
    return (await this.hostsFor(model)).length > 0;
  }

  /** A host that serves `model`, the least busy first. Throws 502 when no host answers at all. */
  async acquire(model: string): Promise<Lease> {
    const candidates = await this.hostsFor(model);
    const host = candidates.sort((a, b) => a.inFlight - b.inFlight)[0];
    if (!host) {
      if (this.hosts.every((h) => h.lastError !== null)) {
        throw new GatewayError('backend_unavailable', `No Ollama host is reachable: ${this.hosts.map((h) => h.lastError).join('; ')}`);
      }
      throw new GatewayError('model_not_found', `No Ollama host has the model '${model}'; run \`ollama pull ${model}\`.`);
    }
    host.inFlight++;
    let released = false;
    return {
      backend: host.backend,
      release: () => {
        if (!released) host.inFlight--;
        released = true;
      },
    };
  }

  /** A snapshot for /health. */
  status(): Array<{ url: string; reachable: boolean; error: string | null; models: string[]; inFlight: number }> {
    return this.hosts.map((h) => ({
      url: h.backend.url,
      reachable: h.lastError === null && h.fetchedAt > -Infinity,
      error: h.lastError,
      models: h.models.map((m) => m.name),
      inFlight: h.inFlight,
    }));
  }

  private async hostsFor(model: string): Promise<HostState[]> {
    await Promise.all(this.hosts.map((h) => this.refresh(h, false)));
    let found = this.hosts.filter((h) => h.models.some((m) => sameModel(m.name, model)));
    if (found.length === 0) {
      // A model pulled a moment ago: look again before saying no.
      await Promise.all(this.hosts.map((h) => this.refresh(h, true)));
      found = this.hosts.filter((h) => h.models.some((m) => sameModel(m.name, model)));
    }
    return found;
  }

  private readonly pending = new Map<HostState, Promise<void>>();

  private async refresh(host: HostState, force: boolean): Promise<void> {
    const fresh = this.options.now() - host.fetchedAt < this.options.modelTtlMs;
    if (fresh && !force && host.lastError === null) return;
    let inProgress = this.pending.get(host);
    if (!inProgress) {
      // One /api/tags call at a time per host, however many requests are waiting on it.
      inProgress = host.backend
        .listModels(AbortSignal.timeout(5_000))
        .then(
          (models) => {
            host.models = models;
            host.lastError = null;
          },
          (err: unknown) => {
            host.models = [];
            host.lastError = err instanceof Error ? err.message : String(err);
          },
        )
        .finally(() => {
          host.fetchedAt = this.options.now();
          this.pending.delete(host);
        });
      this.pending.set(host, inProgress);
    }
    await inProgress;
  }
}
