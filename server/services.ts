/**
 * The composition root's product: every long-lived object the routes use, built once at boot.
 * Tests build the same bag against a temporary database and the Ollama test double.
 */
import type { Store } from '../db/store';
import { BackendPool } from '../lib/backends/pool';
import { OllamaBackend } from '../lib/backends/ollama';
import { ChatService } from '../lib/chat';
import { Limits } from '../lib/limits/limits';
import { Metering } from '../lib/metering';
import { EmbeddingService } from '../lib/embeddings';
import { ModelCatalog } from '../lib/models';
import type { Config } from './config';
import { createLogger, type Logger } from './logger';
import { Metrics } from './metrics';
import { TurnBudget } from './turn-budget';

export interface Services {
  config: Config;
  store: Store;
  pool: BackendPool;
  catalog: ModelCatalog;
  chat: ChatService;
  /** Rate limits, allow-lists, expiry and allotments (in-memory counters live here). */
  limits: Limits;
  embeddings: EmbeddingService;
  metrics: Metrics;
  logger: Logger;
  /** Spreads the start of a burst of new requests over event-loop turns (server/turn-budget.ts). */
  turns: TurnBudget;
}

/** Time per event-loop turn spent starting new requests before the rest wait for the next turn. */
const START_BUDGET_MS_PER_TURN = 2;

export interface ServiceOptions {
  /** The clock for limits and the core (epoch ms); tests inject one to cross minutes and days. */
  now?: () => number;
}

export function buildServices(config: Config, store: Store, options: ServiceOptions = {}): Services {
  const backends = config.OLLAMA_HOST.map(
    (url) =>
      new OllamaBackend(url, {
        headersTimeoutMs: config.OLLAMA_HEADERS_TIMEOUT_MS,
        bodyTimeoutMs: config.OLLAMA_BODY_TIMEOUT_MS,
        connectTimeoutMs: 10_000,
      }),
  );
  const logger = createLogger(config.LOG_LEVEL);
  const metrics = new Metrics();
  const pool = new BackendPool(backends, {
    modelTtlMs: 10_000,
    refreshIntervalMs: config.MODEL_REFRESH_MS,
    concurrency: config.BACKEND_CONCURRENCY,
    queueLimit: config.QUEUE_LIMIT,
    cooldownMs: config.BACKEND_COOLDOWN_MS,
    observer: {
      ...metrics.poolObserver,
      stateChanged: (url, state, error) => logger[state === 'up' ? 'info' : 'warn']({ backend: url, state, error }, 'Ollama host state'),
      // The host may stay up (the failure may be the request's): this line is what shows a host whose model cannot load.
      ambiguousFailure: (url, model, error, counted) =>
        logger.warn({ backend: url, model, error, countedAgainstHost: counted }, 'Ollama failed a request before its first token'),
    },
  });
  metrics.watch(pool);
  const catalog = new ModelCatalog(store, pool);
  const limits = new Limits(options.now ? { now: options.now } : {});
  const metering = new Metering(store, { limits, onSettled: metrics.countTokens, ...(options.now && { now: options.now }) });
  const chat = new ChatService(metering, catalog, pool, {
    defaultMaxOutputTokens: config.DEFAULT_MAX_OUTPUT_TOKENS,
    imageTokens: config.IMAGE_TOKENS,
    ...(options.now && { now: options.now }),
  });
  const embeddings = new EmbeddingService(metering, catalog, pool);
  const turns = new TurnBudget(START_BUDGET_MS_PER_TURN);
  return { config, store, pool, catalog, chat, limits, embeddings, metrics, logger, turns };
}

const closed = new WeakSet<Services>();

/** Releases sockets and the database; the process can then exit on its own. */
export async function closeServices(services: Services): Promise<void> {
  // Idempotent: a shutdown path and a test's cleanup may both call it.
  if (closed.has(services)) return;
  closed.add(services);
  services.pool.close();
  await Promise.all(services.pool.backends.map((b) => (b instanceof OllamaBackend ? b.close() : undefined)));
  services.store.close();
  services.logger.flush();
}
