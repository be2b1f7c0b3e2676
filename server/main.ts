/**
 * Entry point: read the configuration, open the store, build the services, listen, and shut down
 * cleanly on SIGTERM / SIGINT (running requests get SHUTDOWN_GRACE_MS to finish; exit 0).
 */
import { SERVER_STORE_OPTIONS, Store } from '../db/store';
import { prepareEncoders } from '../lib/tokens';
import { createApp } from './app';
import { ConfigError, loadConfig } from './config';
import { listen } from './listen';
import { errorLogger, finishLog } from './logger';
import { buildServices, closeServices } from './services';

async function main(): Promise<void> {
  const config = loadConfig();
  // The logger comes with the services, which need the store first: report write failures late-bound.
  let reportWriteError = (err: unknown) => console.error('writing settlements failed:', err);
  // A long admin transaction must not stall the event loop: writes wait briefly, then retry later.
  // Settlements of a few milliseconds share a commit.
  const store = new Store(config.GATEWAY_DB, { ...SERVER_STORE_OPTIONS, onWriteError: (err) => reportWriteError(err) });
  const services = buildServices(config, store);
  const { logger } = services;
  // A locked database is retried; rows refused for good or left at shutdown are in the error's message.
  reportWriteError = (err) => logger.error({ err }, 'writing settlements failed');
  const refunded = store.refundOrphanReservations();
  if (refunded > 0) logger.warn({ refunded }, 'Refunded credit reservations left by an earlier crash.');
  // Before listening: building an encoder at first use would stall the first requests after a restart.
  prepareEncoders(store.listModels().map((model) => model.tokenizer));
  const running = await listen(createApp(services, { logError: errorLogger(logger) }), config.HOST, config.PORT);
  logger.info({ url: running.url, ollama: config.OLLAMA_HOST, database: config.GATEWAY_DB }, 'ollama-gateway listening');

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, graceMs: config.SHUTDOWN_GRACE_MS }, 'finishing running requests, then exiting');
    void running
      .close(config.SHUTDOWN_GRACE_MS)
      .then(() => closeServices(services))
      // The log's last batch may be mid-write: process.exit() would lose it. At most 2 s: past that
      // stdout is not being read, and what it still holds is given up rather than the exit.
      .then(() => finishLog(logger))
      .then(
        () => process.exit(0),
        (err: unknown) => {
          logger.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err: unknown) => {
  if (err instanceof ConfigError) console.error(err.message);
  else console.error('ollama-gateway failed to start:', err);
  process.exit(1);
});
