/**
 * Prometheus metrics on their own Registry (not prom-client's global one, so several gateways can live
 * in one process, as in tests): requests, tokens, time to first token, durations, the queue and the
 * Ollama hosts. Labels take only bounded values: route labels, configured host URLs, and model names
 * only for requests that got past authentication and model resolution.
 */
import { Router, type Request } from 'express';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { BackendPool, HostStateName, PoolObserver } from '../lib/backends/pool';
import type { UsageRecord } from '../db/store';
import { locals } from './context';
import type { ReplyObserver } from './edge';

const HOST_STATES: HostStateName[] = ['up', 'cooling', 'down'];

export class Metrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'route' | 'status' | 'model'>;
  private readonly duration: Histogram<'route' | 'status'>;
  private readonly tokens: Counter<'direction' | 'model'>;
  private readonly firstToken: Histogram<'model' | 'backend'>;
  private pool: BackendPool | null = null;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.requests = new Counter({
      name: 'gateway_requests_total',
      help: 'HTTP requests answered, by route label, status and public model name (in lower case).',
      labelNames: ['route', 'status', 'model'],
      registers,
    });
    this.duration = new Histogram({
      name: 'gateway_request_duration_seconds',
      help: 'Time from the request line to the end of the reply (streams included).',
      labelNames: ['route', 'status'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers,
    });
    this.tokens = new Counter({
      name: 'gateway_tokens_total',
      help: 'Tokens billed, by direction (in = prompt, out = completion) and public model name.',
      labelNames: ['direction', 'model'],
      registers,
    });
    this.firstToken = new Histogram({
      name: 'gateway_time_to_first_token_seconds',
      help: "Time from the request reaching the backend pool (queue wait included) to Ollama's first line.",
      labelNames: ['model', 'backend'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 180, 600],
      registers,
    });
    const self = this;
    new Gauge({
      name: 'gateway_queue_depth',
      help: 'Requests waiting in the gateway for a free Ollama slot.',
      registers,
      collect() {
        this.set(self.pool?.queueDepth ?? 0);
      },
    });
    new Gauge({
      name: 'gateway_backend_in_flight',
      help: 'Requests in flight per Ollama host.',
      labelNames: ['backend'],
      registers,
      collect() {
        for (const host of self.pool?.status() ?? []) this.set({ backend: host.url }, host.inFlight);
      },
    });
    new Gauge({
      name: 'gateway_backend_up',
      help: 'Whether each Ollama host is healthy (1) or cooling down / down (0).',
      labelNames: ['backend'],
      registers,
      collect() {
        for (const host of self.pool?.status() ?? []) this.set({ backend: host.url }, host.state === 'up' ? 1 : 0);
      },
    });
    new Gauge({
      name: 'gateway_backend_state',
      help: 'Each Ollama host\'s state: 1 for its current state, 0 for the others.',
      labelNames: ['backend', 'state'],
      registers,
      collect() {
        for (const host of self.pool?.status() ?? []) {
          for (const state of HOST_STATES) this.set({ backend: host.url, state }, host.state === state ? 1 : 0);
        }
      },
    });
  }

  /** The pool whose queue and hosts the gauges read at scrape time. */
  watch(pool: BackendPool): void {
    this.pool = pool;
  }

  /** Time to first token, fed by the pool. */
  readonly poolObserver: PoolObserver = {
    firstByte: (model, url, seconds) => this.firstToken.observe({ model, backend: url }, seconds),
  };

  /** Counts a settled request's tokens (given to the core's metering as its `onSettled`). */
  readonly countTokens = (usage: UsageRecord): void => {
    const model = usage.model ?? '';
    if (usage.promptTokens) this.tokens.inc({ direction: 'in', model }, usage.promptTokens);
    if (usage.completionTokens) this.tokens.inc({ direction: 'out', model }, usage.completionTokens);
  };

  /** Counts and times every reply once it is finished or cut (an observer of server/edge.ts). */
  readonly observeReply: ReplyObserver = (req, res, startedNs, endedNs) => {
    const ctx = locals(res);
    const route = ctx.route ?? routeLabel(req);
    const status = String(res.headersSent ? res.statusCode : 499);
    // A model name the caller made up must not become a label: only admitted requests carry it, and in
    // lower case, as Ollama matches names (`Llama3.2` and `llama3.2` are one model, one series).
    const model = ctx.principal && ctx.model && ![400, 403, 404].includes(res.statusCode) ? ctx.model.toLowerCase() : '';
    this.requests.inc({ route, status, model });
    this.duration.observe({ route, status }, Number(endedNs - startedNs) / 1e9);
  };
}

/** Express's matched route pattern (bounded), or one label for everything unmatched. */
function routeLabel(req: Request): string {
  const path = (req.route as { path?: unknown } | undefined)?.path;
  return typeof path === 'string' ? path : 'unmatched';
}

/** `GET /metrics` in Prometheus text format. */
export function metricsRouter(metrics: Metrics): Router {
  const router = Router();
  router.get('/metrics', async (_req, res) => {
    res.set('Content-Type', metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  return router;
}
