/**
 * Starts the real gateway in-process on a free port, with a fresh SQLite file on disk and the Ollama
 * test double as its only host. Each test file builds its own and closes it afterwards.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SERVER_STORE_OPTIONS, Store } from '../../db/store';
import { createApp } from '../../server/app';
import { loadConfig, type Config } from '../../server/config';
import { listen, type RunningServer } from '../../server/listen';
import { buildServices, closeServices, type Services } from '../../server/services';
import { startOllamaDouble, type DoubleOptions, type OllamaDouble } from './ollama-double';

export interface Harness {
  url: string;
  store: Store;
  services: Services;
  double: OllamaDouble;
  dbFile: string;
  server: RunningServer;
  /** A key of its own organisation; `credits` (in credits) makes the balance limited. */
  createKey(name?: string, credits?: number): ReturnType<Store['createKey']>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  double?: DoubleOptions;
  env?: Record<string, string>;
  /** Use an existing double (e.g. several hosts). */
  doubles?: OllamaDouble[];
  /** The clock of limits and the core (epoch ms), for minute windows and daily resets. */
  now?: () => number;
}

let counter = 0;

export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const doubles = options.doubles ?? [await startOllamaDouble(options.double)];
  const double = doubles[0] as OllamaDouble;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gateway-test-'));
  const dbFile = path.join(dir, 'gateway.db');
  const config: Config = loadConfig({
    OLLAMA_HOST: doubles.map((d) => d.url).join(','),
    GATEWAY_DB: dbFile,
    PORT: '0',
    LOG_LEVEL: 'silent',
    ...options.env,
  });
  const store = new Store(config.GATEWAY_DB, SERVER_STORE_OPTIONS); // as server/main.ts runs it
  store.setModel({ name: 'covalid-1.0', ollamaModel: 'llama3.2' });
  store.setModel({ name: 'covalid-2.0', ollamaModel: 'qwen3:8b' });
  const services = buildServices(config, store, options.now ? { now: options.now } : {});
  const errors: unknown[] = [];
  const server = await listen(createApp(services, { logError: (err) => errors.push(err) }), '127.0.0.1', 0);
  return {
    url: server.url,
    store,
    services,
    double,
    dbFile,
    server,
    createKey: (name = `test-${++counter}`, credits?: number) =>
      store.createKey(credits === undefined ? { name } : { name, balanceMicro: Math.round(credits * 1_000_000) }),
    close: async () => {
      await server.close(100);
      await closeServices(services);
      if (!options.doubles) await Promise.all(doubles.map((d) => d.close()));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** POSTs JSON (or a raw string) and returns status, headers and the parsed body. */
export async function postJson(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; body: any; text: string }> { // eslint-disable-line @typescript-eslint/no-explicit-any -- test bodies are checked field by field
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: res.status, headers: res.headers, body: parsed, text };
}
