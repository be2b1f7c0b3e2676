/**
 * Entry point: read the configuration, open the store, build the services, listen, and shut down
 * cleanly on SIGTERM / SIGINT.
 */
import { Store } from '../db/store';
import { createApp } from './app';
import { ConfigError, loadConfig } from './config';
import { listen } from './listen';
import { buildServices, closeServices } from './services';

async function main(): Promise<void> {
  const config = loadConfig();
  const store = new Store(config.GATEWAY_DB);
  const refunded = store.refundOrphanReservations();
  if (refunded > 0) console.warn(`Refunded ${refunded} credit reservation(s) left by an earlier crash.`);
  const services = buildServices(config, store);
  const running = await listen(createApp(services), config.HOST, config.PORT);
  console.log(`ollama-gateway listening on ${running.url} (Ollama: ${config.OLLAMA_HOST.join(', ')}; database: ${config.GATEWAY_DB})`);

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`${signal}: finishing running requests, then exiting.`);
    void running
      .close(30_000)
      .then(() => closeServices(services))
      .then(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err: unknown) => {
  if (err instanceof ConfigError) console.error(err.message);
  else console.error('ollama-gateway failed to start:', err);
  process.exit(1);
});
