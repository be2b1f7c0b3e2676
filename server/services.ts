/**
 * The composition root's product: every long-lived object the routes use, built once at boot.
 * Tests build the same bag against a temporary database and the Ollama test double.
 */
import type { Store } from '../db/store';
import { BackendPool } from '../lib/backends/pool';
import { OllamaBackend } from '../lib/backends/ollama';
import { ChatService } from '../lib/chat';
import { ModelCatalog } from '../lib/models';
import type { Config } from './config';

export interface Services {
  config: Config;
  store: Store;
  pool: BackendPool;
  catalog: ModelCatalog;
  chat: ChatService;
}

export function buildServices(config: Config, store: Store): Services {
  const backends = config.OLLAMA_HOST.map(
    (url) =>
      new OllamaBackend(url, {
        headersTimeoutMs: config.OLLAMA_HEADERS_TIMEOUT_MS,
        bodyTimeoutMs: config.OLLAMA_BODY_TIMEOUT_MS,
        connectTimeoutMs: 10_000,
      }),
  );
  const pool = new BackendPool(backends, { modelTtlMs: 10_000 });
  const catalog = new ModelCatalog(store, pool);
  const chat = new ChatService(store, catalog, pool, { defaultMaxOutputTokens: config.DEFAULT_MAX_OUTPUT_TOKENS });
  return { config, store, pool, catalog, chat };
}

/** Releases sockets and the database; the process can then exit on its own. */
export async function closeServices(services: Services): Promise<void> {
  await Promise.all(services.pool.backends.map((b) => (b instanceof OllamaBackend ? b.close() : undefined)));
  services.store.close();
}
