/**
 * The Ollama hosts behind the gateway: which models each one has, whether it is healthy, and how many
 * requests it is serving.
 *
 * - Model lists come from /api/tags: refreshed in the background, when stale, when a host says it
 *   lacks a model, and when no host lists a requested model (at most once per host per `recheckMs`).
 * - A request goes only to hosts that list its model, the one with the fewest outstanding requests
 *   first, and at most `concurrency` at a time per host and model; the rest wait in a fair queue.
 * - A host that cannot be reached is `down`, one that answered 5xx is `cooling`; either is left out
 *   while another host can serve, and health probes (/api/version) bring it back after a cool-down.
 *   With no healthy host left, the gateway still tries the others rather than refusing blindly.
 * - A request that failed before Ollama's first byte is retried once on another host with the model.
 *   Ollama's own 500 may be the host's fault or the request's (failures.ts, `isAmbiguousFailure`):
 *   that host is taken out only once another host has served the request, and never when it is the
 *   last healthy one, so a prompt that fails everywhere, or only sometimes, cannot take all the
 *   hosts out (nor, with one host, turn /ready to 503).
 */
import type { CancelSignal } from '../abort';
import { GatewayError } from '../errors';
import { FairScheduler, type Assignment } from '../scheduler';
import { isAmbiguousFailure } from './failures';
import { OllamaStreamError } from './ndjson';
import type { Backend, BackendModel } from './types';

export interface Lease {
  backend: Backend;
  /** Frees the slot; safe to call more than once (only the first call counts). */
  release(): void;
}

export type HostStateName = 'up' | 'cooling' | 'down';

export interface HostStatus {
  url: string;
  state: HostStateName;
  /** Whether the last contact (request, probe or model list) succeeded. */
  reachable: boolean;
  version: string | null;
  error: string | null;
  models: string[];
  inFlight: number;
  /**
   * Models Ollama failed here before their first token (its own 500) and has not served since, newest
   * first. Such a failure may be the request's fault, so it does not change the host's state by itself
   * (see `dispatch`); this is how an operator sees a model that cannot load on a host still `up`.
   */
  failingModels: FailingModel[];
}

export interface FailingModel {
  model: string;
  error: string;
  /** When it last failed (ms since the epoch) and how often since it last worked here. */
  at: number;
  count: number;
}

/** Hooks for metrics, so the pool knows nothing of Prometheus. */
export interface PoolObserver {
  /** Seconds from the request reaching the pool (queue included) to Ollama's first line. */
  firstByte?(model: string, url: string, seconds: number): void;
  /** A host changed state. */
  stateChanged?(url: string, state: HostStateName, error: string | null): void;
  /**
   * Ollama's own 500 before the first token, which may be the host's fault or the request's (see
   * `dispatch`): told whether it was counted against the host, since the host's state may not change.
   */
  ambiguousFailure?(url: string, model: string, error: string, countedAgainstHost: boolean): void;
}

export interface BackendPoolOptions {
  /** How long a host's model list is trusted before a request fetches it again. */
  modelTtlMs: number;
  /**
   * A request for a model no host lists fetches the lists again (it may have been pulled a moment
   * ago), but only those older than this: a client looping on a made-up name must not probe every
   * host on every request. A model pulled just now is found within this long. Default 2 s.
   */
  recheckMs?: number;
  /** Background refresh of every healthy host's model list; 0 turns it off. */
  refreshIntervalMs?: number;
  /** Requests in flight per host and model (Ollama's OLLAMA_NUM_PARALLEL). */
  concurrency?: number;
  /** Requests allowed to wait for a slot; past that, 503. */
  queueLimit?: number;
  /**
   * First cool-down after a failure; doubles with each failed probe up to `maxCooldownMs`, and with each
   * take-out for a model that fails there (its own 500) until that model is served there again.
   */
  cooldownMs?: number;
  maxCooldownMs?: number;
  observer?: PoolObserver;
  now?: () => number;
}

export interface AcquireOptions {
  /** Who waits, for round-robin fairness between organisations. */
  orgId?: string;
  /** The caller left: give up the place in the queue. */
  signal?: CancelSignal;
  /** Hosts not to use (the one that just failed, for a retry). */
  exclude?: ReadonlySet<Backend>;
}

interface HostState {
  backend: Backend;
  models: BackendModel[];
  /** `modelKey` of each listed model: whether a host has a model is asked on every request. */
  modelKeys: Set<string>;
  fetchedAt: number;
  inFlight: number;
  perModel: Map<string, number>;
  state: HostStateName;
  lastError: string | null;
  version: string | null;
  /** Consecutive failures, for the cool-down's back-off. */
  failures: number;
  /** Counts state changes: a failure seen before the last one is news about an earlier state. */
  changes: number;
  coolUntil: number;
  probeTimer: NodeJS.Timeout | null;
  /** By model key: Ollama's own failures before the first token, until the model is served here again. */
  failing: Map<string, FailingEntry>;
}

interface FailingEntry extends FailingModel {
  /**
   * How often such a failure took the host out (another host served the request) since the model was
   * last served here: each such take-out doubles the cool-down, though the probes between them pass
   * (they ask for the version and the model list, which a host whose model cannot load answers fine).
   */
  strikes: number;
  struckAt: number;
}

/**
 * Ollama accepts `llama3.2` for `llama3.2:latest`, and a name in any case (`Llama3.2`: its names are
 * case-insensitive, though it lists them as pulled); so does the gateway.
 */
export function sameModel(listed: string, asked: string): boolean {
  return modelKey(listed) === modelKey(asked);
}

/**
 * One key per model whichever spelling the caller used, so slots are not counted twice. The tag is
 * after a colon in the last path segment: `localhost:5000/model` has none (that colon is a port).
 */
function modelKey(model: string): string {
  const lower = model.toLowerCase();
  return lower.slice(lower.lastIndexOf('/') + 1).includes(':') ? lower : `${lower}:latest`;
}

const NEVER = new AbortController().signal;

export class BackendPool {
  private readonly hosts: HostState[];
  private readonly options: Required<Omit<BackendPoolOptions, 'observer'>> & { observer: PoolObserver };
  private readonly scheduler: FairScheduler<Lease>;
  private readonly pending = new Map<HostState, Promise<void>>();
  private refreshTimer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(backends: Backend[], options: BackendPoolOptions = { modelTtlMs: 10_000 }) {
    if (backends.length === 0) throw new Error('at least one Ollama host is needed');
    this.hosts = backends.map((backend) => ({
      backend,
      models: [],
      modelKeys: new Set(),
      fetchedAt: -Infinity,
      inFlight: 0,
      perModel: new Map(),
      state: 'up',
      lastError: null,
      version: null,
      failures: 0,
      changes: 0,
      coolUntil: 0,
      probeTimer: null,
      failing: new Map(),
    }));
    this.options = {
      refreshIntervalMs: 0,
      recheckMs: 2_000,
      concurrency: 1,
      queueLimit: 256,
      cooldownMs: 5_000,
      maxCooldownMs: 60_000,
      now: Date.now,
      observer: {},
      ...options,
    };
    this.scheduler = new FairScheduler<Lease>(this.options.queueLimit);
    if (this.options.refreshIntervalMs > 0) {
      this.refreshTimer = setInterval(() => void this.refreshHealthy(), this.options.refreshIntervalMs);
      this.refreshTimer.unref(); // never what keeps the process alive
      void this.refreshHealthy(); // learn the models at boot rather than on the first request
    }
  }

  get backends(): Backend[] {
    return this.hosts.map((h) => h.backend);
  }

  /** Requests waiting for a slot. */
  get queueDepth(): number {
    return this.scheduler.depth;
  }

  /** Whether some host is healthy (for /ready). */
  get usable(): boolean {
    return this.hosts.some((h) => h.state === 'up' && h.lastError === null);
  }

  /** Every model any host has, once per model. */
  async models(): Promise<BackendModel[]> {
    await this.refreshAll(false);
    // One entry per model, as requests resolve names: hosts may list it in different cases (a pull
    // of `Qwen3:8b` here, `qwen3:8b` there). The first host's spelling is the one shown.
    const seen = new Map<string, BackendModel>();
    for (const host of this.hosts) {
      for (const m of host.models) {
        const key = modelKey(m.name);
        if (!seen.has(key)) seen.set(key, m);
      }
    }
    return [...seen.values()];
  }

  /** Whether some host has `model`, refreshing stale or missing lists first. */
  async hasModel(model: string): Promise<boolean> {
    return (await this.hostsFor(model)).length > 0;
  }

  /**
   * `model` as a host lists it (`Llama3.2` → `llama3.2:latest`), refreshing stale or missing lists
   * first; undefined when no host has it. One spelling per model for usage rows, metrics labels and
   * the model table's aliases, whichever one the caller used.
   */
  async listedName(model: string): Promise<string | undefined> {
    const key = modelKey(model);
    for (const host of await this.hostsFor(model)) {
      const listed = host.models.find((m) => modelKey(m.name) === key);
      if (listed) return listed.name;
    }
    return undefined;
  }

  /**
   * A slot on a host that serves `model`: at once when one is free, else after waiting in the fair
   * queue. 404 when no host has the model, 502 when no host answers at all, 503 when the queue is full.
   */
  async acquire(model: string, options: AcquireOptions = {}): Promise<Lease> {
    const known = (await this.hostsFor(model)).filter((h) => !options.exclude?.has(h.backend));
    if (known.length === 0) throw this.noHost(model);
    return this.queue(model, options);
  }

  /**
   * Acquires a slot and calls `call` with its host; a failure before the first byte (unreachable, 5xx,
   * busy, model missing there) is retried once on another host with the model. On success the caller
   * owns the lease and must release it; on failure it is already released.
   */
  async dispatch<R>(model: string, options: AcquireOptions, call: (backend: Backend) => Promise<R>): Promise<{ lease: Lease; result: R }> {
    const started = this.options.now();
    const attempt = async (acquire: () => Promise<Lease>) => {
      const lease = await acquire();
      try {
        const result = await call(lease.backend);
        this.options.observer.firstByte?.(model, lease.backend.url, (this.options.now() - started) / 1000);
        this.noteSuccess(lease.backend, model);
        return { lease, result };
      } catch (err) {
        lease.release();
        throw Object.assign(new Error('attempt failed'), { failure: err, backend: lease.backend });
      }
    };
    try {
      return await attempt(() => this.acquire(model, options));
    } catch (wrapped) {
      const { failure, backend } = unwrap(wrapped);
      if (!backend) throw failure; // refused before any host was tried (queue full, no model, left)
      if (options.signal?.aborted) throw failure; // the client left: says nothing about the host
      // The host's fault or this request's? When only another host can tell, it is asked first.
      const ambiguous = isAmbiguousFailure(failure);
      const changesAtFailure = this.hostOf(backend).changes;
      if (ambiguous) this.noteFailing(backend, model, failure);
      else await this.noteFailure(backend, failure);
      const exclude = new Set([backend]);
      const retry = !options.signal?.aborted && isRetryable(failure) && this.withModel(model, exclude).length > 0;
      if (!retry) {
        if (ambiguous) this.tellAmbiguous(backend, model, failure, false);
        throw failure;
      }
      let served: { lease: Lease; result: R };
      try {
        // The lists were looked up for the first attempt (and the failed host's refreshed by
        // noteFailure): the retry queues for the other hosts without looking them up again.
        served = await attempt(() => this.queue(model, { ...options, exclude }));
      } catch (wrapped2) {
        const second = unwrap(wrapped2);
        // An ambiguous failure there too (most likely the same one: the request's fault) takes neither
        // host out: no host is left to tell.
        if (ambiguous) this.tellAmbiguous(backend, model, failure, false);
        if (second.backend && !options.signal?.aborted) {
          if (!isAmbiguousFailure(second.failure)) await this.noteFailure(second.backend, second.failure);
          else {
            this.noteFailing(second.backend, model, second.failure);
            this.tellAmbiguous(second.backend, model, second.failure, false);
          }
        }
        throw second.failure;
      }
      // Another host served what this one failed: most likely it was this host's. Counted once, though
      // requests that reached it meanwhile failed too (each would double its cool-down), not if it was
      // taken out or came back since (the failure is about a state it has left), and never against the
      // last healthy host: a prompt that fails only sometimes must not take them all out.
      if (ambiguous) {
        const counted = this.hostOf(backend).changes === changesAtFailure && this.mayTakeOut(backend);
        this.tellAmbiguous(backend, model, failure, counted);
        if (counted) await this.noteFailure(backend, failure, this.strike(backend, model));
      }
      return served;
    }
  }

  /** A snapshot for /health and metrics. */
  status(): HostStatus[] {
    return this.hosts.map((h) => ({
      url: h.backend.url,
      state: h.state,
      reachable: h.lastError === null && h.fetchedAt > -Infinity,
      version: h.version,
      error: h.lastError,
      models: h.models.map((m) => m.name),
      inFlight: h.inFlight,
      failingModels: [...h.failing.values()].sort((a, b) => b.at - a.at).map(({ model, error, at, count }) => ({ model, error, at, count })),
    }));
  }

  /** Stops background timers (model refresh, probes). */
  close(): void {
    this.closed = true;
    if (this.refreshTimer) clearInterval(this.refreshTimer);
    for (const host of this.hosts) if (host.probeTimer) clearTimeout(host.probeTimer);
  }

  // ---- choosing a host ---------------------------------------------------------------------------

  /** A place in the fair queue; assign() picks the host when a slot is free, from the lists as they are then. */
  private queue(model: string, options: AcquireOptions): Promise<Lease> {
    return this.scheduler.acquire(options.orgId ?? '', options.signal ?? NEVER, () => this.assign(model, options.exclude));
  }

  private assign(model: string, exclude?: ReadonlySet<Backend>): Assignment<Lease> {
    const withModel = this.withModel(model, exclude);
    if (withModel.length === 0) return this.noHost(model);
    const healthy = withModel.filter((h) => h.state === 'up');
    // No healthy host: try the others rather than refuse; a failure there is an honest 502.
    const choice = healthy.length > 0 ? healthy : withModel;
    const key = modelKey(model);
    const free = choice.filter((h) => (h.perModel.get(key) ?? 0) < this.options.concurrency);
    if (free.length === 0) return 'wait';
    const host = free.reduce((best, h) => (h.inFlight < best.inFlight ? h : best));
    host.inFlight++;
    host.perModel.set(key, (host.perModel.get(key) ?? 0) + 1);
    let released = false;
    return {
      slot: {
        backend: host.backend,
        release: () => {
          if (released) return;
          released = true;
          host.inFlight--;
          host.perModel.set(key, (host.perModel.get(key) ?? 1) - 1);
          this.scheduler.pump();
        },
      },
    };
  }

  private noHost(model: string): GatewayError {
    if (this.hosts.every((h) => h.lastError !== null)) {
      return new GatewayError('backend_unavailable', `No Ollama host is reachable: ${this.hosts.map((h) => h.lastError).join('; ')}`);
    }
    return new GatewayError('model_not_found', `No Ollama host has the model '${model}'; run \`ollama pull ${model}\`.`);
  }

  /** Hosts that list `model`, leaving out `exclude`. */
  private withModel(model: string, exclude?: ReadonlySet<Backend>): HostState[] {
    return this.hosts.filter((h) => !exclude?.has(h.backend) && hasModel(h, model));
  }

  private async hostsFor(model: string): Promise<HostState[]> {
    const refreshing = this.refreshAll(false);
    if (refreshing) await refreshing;
    let found = this.withModel(model);
    if (found.length === 0) {
      // A model pulled a moment ago: look again before saying no.
      await Promise.all(this.hosts.map((h) => this.recheck(h)));
      found = this.withModel(model);
    }
    return found;
  }

  /**
   * A forced refresh for a model no host lists, unless the host's list is younger than `recheckMs`
   * (fetched by an earlier recheck, a stale-list refresh, or a probe). A probe already under way is
   * joined rather than repeated (probeOnce), so concurrent misses cost one probe too.
   */
  private recheck(host: HostState): Promise<void> {
    if (this.options.now() - host.fetchedAt < this.options.recheckMs) return Promise.resolve();
    return this.refresh(host, true);
  }

  // ---- health ------------------------------------------------------------------------------------

  private noteSuccess(backend: Backend, model: string): void {
    const host = this.hostOf(backend);
    if (host.lastError !== null && host.state === 'up') host.lastError = null;
    if (host.failing.size > 0) host.failing.delete(modelKey(model));
  }

  /**
   * What a failure before the first byte says about its host. `strikes`: how often this failure's
   * model has taken the host out since it was last served there (its cool-down doubles as often).
   */
  private async noteFailure(backend: Backend, err: unknown, strikes = 0): Promise<void> {
    const host = this.hostOf(backend);
    if (!(err instanceof GatewayError)) return; // e.g. the client's own abort
    if (err.code === 'backend_unavailable') this.takeOut(host, 'down', err.message);
    else if (err.code === 'backend_error' && serverSide(err)) this.takeOut(host, 'cooling', err.message, strikes);
    else if (err.code === 'model_not_found') await this.refresh(host, true);
    // `overloaded` (Ollama's own queue is full) says nothing about health: retried elsewhere, no cool-down.
  }

  /**
   * Ollama's own failure before the first token, recorded when it is seen (a success there meanwhile,
   * while the retry runs, then clears it). Keyed by the model as the host lists it: one entry per model
   * the host lists (a probe drops those it no longer does).
   */
  private noteFailing(backend: Backend, model: string, failure: unknown): void {
    const host = this.hostOf(backend);
    const key = modelKey(model);
    const earlier = host.failing.get(key);
    const error = messageOf(failure);
    const at = this.options.now();
    if (earlier) Object.assign(earlier, { error, at, count: earlier.count + 1 });
    else host.failing.set(key, { model: host.models.find((m) => modelKey(m.name) === key)?.name ?? model, error, at, count: 1, strikes: 0, struckAt: 0 });
  }

  /** The model's failure took the host out: returns how often it has since it was last served there. */
  private strike(backend: Backend, model: string): number {
    const entry = this.hostOf(backend).failing.get(modelKey(model));
    if (!entry) return 1; // served there since the failure: this take-out is the first
    const now = this.options.now();
    // Strikes long past (the model unused here since) are forgotten: a new failure starts over.
    if (now - entry.struckAt > STRIKES_FORGOTTEN_AFTER_COOLDOWNS * this.options.maxCooldownMs) entry.strikes = 0;
    entry.strikes++;
    entry.struckAt = now;
    return entry.strikes;
  }

  private tellAmbiguous(backend: Backend, model: string, failure: unknown, counted: boolean): void {
    this.options.observer.ambiguousFailure?.(backend.url, model, messageOf(failure), counted);
  }

  /** Whether an ambiguous failure may take `backend` out: it is still up, and another host is healthy. */
  private mayTakeOut(backend: Backend): boolean {
    const host = this.hostOf(backend);
    return host.state === 'up' && this.hosts.some((h) => h !== host && h.state === 'up' && h.lastError === null);
  }

  /** `strikes`: at least this many doublings minus one (see noteFailure), whatever the probes said. */
  private takeOut(host: HostState, state: 'down' | 'cooling', error: string, strikes = 0): void {
    host.failures++;
    host.lastError = error;
    const doublings = Math.max(host.failures, strikes) - 1;
    const wait = Math.min(this.options.cooldownMs * 2 ** doublings, this.options.maxCooldownMs);
    host.coolUntil = this.options.now() + wait;
    this.setState(host, state);
    if (host.probeTimer) clearTimeout(host.probeTimer);
    if (this.closed) return;
    host.probeTimer = setTimeout(() => {
      host.probeTimer = null;
      // The timer is the end of the cool-down: probe without comparing clocks. Timers run on the event
      // loop's cached monotonic time and can fire a little before `now()` reaches `coolUntil`; a check
      // here would then skip the probe with no timer left to try again, and the host would stay out.
      void this.probeOnce(host);
    }, wait);
    host.probeTimer.unref();
  }

  private setState(host: HostState, state: HostStateName): void {
    if (host.state === state) return;
    host.state = state;
    host.changes++;
    this.options.observer.stateChanged?.(host.backend.url, state, host.lastError);
  }

  private hostOf(backend: Backend): HostState {
    const host = this.hosts.find((h) => h.backend === backend);
    if (!host) throw new Error(`unknown backend ${backend.url}`);
    return host;
  }

  private async refreshHealthy(): Promise<void> {
    await Promise.all(this.hosts.filter((h) => h.state === 'up').map((h) => this.refresh(h, true)));
  }

  /**
   * Refreshes the hosts that need it; undefined, with nothing to wait for, when none does. That is
   * every request's case, and it costs no promise (one a host, and Promise.all's, measured a few
   * microseconds of each request's start).
   */
  private refreshAll(force: boolean): Promise<void> | undefined {
    const now = this.options.now();
    if (!force && !this.hosts.some((h) => this.needsRefresh(h, false, now))) return undefined;
    return Promise.all(this.hosts.map((h) => this.refresh(h, force))).then(() => undefined);
  }

  /**
   * Fetches a host's version and models. A healthy host is refreshed when its list is stale (or
   * `force`); a host taken out is probed only once its cool-down is over, and comes back on success.
   */
  private async refresh(host: HostState, force: boolean): Promise<void> {
    if (this.needsRefresh(host, force, this.options.now())) await this.probeOnce(host);
  }

  private needsRefresh(host: HostState, force: boolean, now: number): boolean {
    if (host.state === 'up') {
      const fresh = now - host.fetchedAt < this.options.modelTtlMs;
      return !fresh || force || host.lastError !== null;
    }
    return now >= host.coolUntil; // until then it is cooling down; its probe timer will look again
  }

  /** One probe at a time per host, however many requests are waiting on it. */
  private probeOnce(host: HostState): Promise<void> {
    let inProgress = this.pending.get(host);
    if (!inProgress) {
      inProgress = this.probe(host).finally(() => {
        host.fetchedAt = this.options.now();
        this.pending.delete(host);
      });
      this.pending.set(host, inProgress);
    }
    return inProgress;
  }

  private async probe(host: HostState): Promise<void> {
    try {
      const signal = AbortSignal.timeout(5_000);
      const [version, models] = await Promise.all([host.backend.version(signal), host.backend.listModels(signal)]);
      host.version = version;
      host.models = models;
      host.modelKeys = new Set(models.map((m) => modelKey(m.name)));
      host.lastError = null;
      host.failures = 0;
      for (const key of host.failing.keys()) if (!host.modelKeys.has(key)) host.failing.delete(key);
      if (host.probeTimer) clearTimeout(host.probeTimer);
      host.probeTimer = null;
      this.setState(host, 'up');
      this.scheduler.pump(); // waiters may be served by this host now
    } catch (err) {
      // The last known model list is kept: with no healthy host left, the host is still worth a try.
      this.takeOut(host, 'down', err instanceof Error ? err.message : String(err));
    }
  }
}

const messageOf = (failure: unknown): string => (failure instanceof Error ? failure.message : String(failure));

/** Strikes older than this many maximal cool-downs are forgotten (10 minutes by default). */
const STRIKES_FORGOTTEN_AFTER_COOLDOWNS = 10;

function hasModel(host: HostState, model: string): boolean {
  return host.modelKeys.has(modelKey(model));
}

function unwrap(wrapped: unknown): { failure: unknown; backend: Backend | undefined } {
  if (wrapped instanceof Error && 'failure' in wrapped) {
    const w = wrapped as Error & { failure: unknown; backend: Backend };
    return { failure: w.failure, backend: w.backend };
  }
  return { failure: wrapped, backend: undefined };
}

/** Failures before the first byte that another host may not have. */
function isRetryable(err: unknown): boolean {
  if (!(err instanceof GatewayError) || failedThisRequest(err)) return false;
  return err.code === 'backend_unavailable' || err.code === 'backend_error' || err.code === 'overloaded' || err.code === 'model_not_found';
}

/** A 5xx answer, or an answer that was not Ollama's at all (e.g. a proxy's HTML page). */
function serverSide(err: GatewayError): boolean {
  if (failedThisRequest(err)) return false;
  const status = (err.cause as { status_code?: unknown } | undefined)?.status_code;
  return typeof status !== 'number' || status >= 500;
}

/**
 * Ollama accepted the request (200) and then reported an error in place of the first token, e.g. a
 * tool call it could not parse: this request failed, not the host. Another host would fail it the
 * same way, and taking hosts out for it would let one bad prompt take them all out.
 */
function failedThisRequest(err: GatewayError): boolean {
  return err.cause instanceof OllamaStreamError;
}
