/**
 * `npm run bench:store`: the store's own cost a request, without HTTP or Ollama — what every chat
 * request asks of SQLite: authenticate the key, reserve its worst case (a limited balance and an
 * allotment check), settle the real cost and write the usage row, with the grouped commit every
 * 50 settlements as under load. The gateway's bench (`npm run bench`) sees these microseconds only
 * through its noise; here a change to the store shows at once.
 *
 * Options (environment): STORE_N (requests a round, default 20000), STORE_ROUNDS (default 5).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SERVER_STORE_OPTIONS, Store, type UsageRecord } from '../db/store';
import { allotmentChecks } from '../lib/limits/allotments';
import type { Principal } from '../lib/types';

const N = Number(process.env.STORE_N ?? 20_000);
const ROUNDS = Number(process.env.STORE_ROUNDS ?? 5);
const COMMIT_EVERY = 50;
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gateway-store-bench-'));
// As the server opens it (its commit window), so a turn boundary does not commit on its own.
const store = new Store(path.join(dir, 'gateway.db'), SERVER_STORE_OPTIONS);

async function main(): Promise<void> {
  const key = store.createKey({ name: 'bench', balanceMicro: 1e15 });
  const usage = (principal: Principal): UsageRecord => ({
    requestId: 'req_bench', route: 'openai.chat', principal, model: 'bench-model', promptTokens: 30, completionTokens: 20, costMicro: 70, status: 200, errorCode: null, latencyMs: 1,
  });

  const round = async (n: number): Promise<number> => {
    const started = process.hrtime.bigint();
    for (let i = 0; i < n; i++) {
      // Each request in a turn of the event loop of its own, as at one connection in the server (the
      // store checks other connections' changes once a turn), with the server's await between auth
      // and admission (a microtask, the same turn).
      await nextTurn();
      const principal = store.authenticateClient(key.clientKey, key.clientSecret) as Principal;
      await Promise.resolve();
      const reservation = store.reserve(principal.orgId, 1_000, allotmentChecks(principal, Date.now())) ?? null;
      store.settle(reservation, 70, usage(principal));
      if (i % COMMIT_EVERY === COMMIT_EVERY - 1) store.flush();
    }
    store.flush();
    return Number(process.hrtime.bigint() - started) / n / 1_000;
  };

  await round(Math.min(N, 5_000)); // warm-up: statements prepared, code optimised
  const rounds: number[] = [];
  for (let r = 0; r < ROUNDS; r++) rounds.push(await round(N));
  const median = [...rounds].sort((a, b) => a - b)[Math.floor(rounds.length / 2)] as number;
  console.log(`store work a request: ${median.toFixed(2)} µs median (rounds: ${rounds.map((r) => r.toFixed(2)).join(', ')})`);
}

main().finally(() => {
  store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});
