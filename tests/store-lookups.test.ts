/**
 * The store keeps keys, models and balances it has read, for speed; a change must still apply to the
 * next request, whether made through this store (at once) or by the admin CLI in another process
 * (another connection on the file).
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Store } from '../db/store';

/**
 * The next request: a new turn of the event loop. The store checks for other connections' changes
 * at every request's authentication, and for other look-ups once a turn, so a change made by another
 * connection shows from the next turn on, and to every request authenticated after it.
 */
const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

describe('key and model look-ups', () => {
  let dir: string;
  let server: Store;
  let cli: Store;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gateway-lookups-'));
    server = new Store(path.join(dir, 'g.db'));
    cli = new Store(path.join(dir, 'g.db'));
  });
  afterEach(() => {
    server.close();
    cli.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('a key revoked by another connection is refused on the next request', async () => {
    const key = server.createKey({ name: 'family' });
    expect(server.authenticateApiKey(key.apiKey)?.keyName).toBe('family');
    expect(server.authenticateClient(key.clientKey, key.clientSecret)?.keyName).toBe('family');
    expect(cli.revokeKey(key.clientKey)).toBe(true);
    await nextTurn();
    expect(server.authenticateApiKey(key.apiKey)).toBeUndefined();
    expect(server.authenticateClient(key.clientKey, key.clientSecret)).toBeUndefined();
  });

  test('limits and models changed by another connection apply at once; a wrong secret is refused even after a hit', async () => {
    const key = server.createKey({ name: 'team' });
    expect(server.authenticateApiKey(key.apiKey)?.limits?.key.rpm).toBeNull();
    cli.setKeyLimits(key.clientKey, { rpm: 7 });
    await nextTurn();
    expect(server.authenticateApiKey(key.apiKey)?.limits?.key.rpm).toBe(7);
    expect(server.authenticateClient(key.clientKey, `${key.clientSecret}x`)).toBeUndefined();

    server.setModel({ name: 'house', ollamaModel: 'llama3.2', inputMicroPer1k: 1000 });
    expect(server.getModel('house')?.inputMicroPer1k).toBe(1000);
    cli.setModel({ name: 'house', ollamaModel: 'llama3.2', inputMicroPer1k: 2000 });
    await nextTurn();
    expect(server.getModel('house')?.inputMicroPer1k).toBe(2000);
    expect(server.listModels().find((m) => m.name === 'house')?.inputMicroPer1k).toBe(2000);
    cli.removeModel('house');
    await nextTurn();
    expect(server.getModel('house')).toBeUndefined();
    expect(server.listModels().find((m) => m.name === 'house')).toBeUndefined();
    cli.setModel({ name: 'house', ollamaModel: 'llama3.2', inputMicroPer1k: 3000 });
    await nextTurn();
    expect(server.listModels().find((m) => m.name === 'house')?.inputMicroPer1k).toBe(3000);
  });

  test('a request read from a socket after a revocation is refused, even in the turn after a check made in a check phase (review)', async () => {
    const key = server.createKey({ name: 'late' });
    let onData: (() => void) | undefined;
    const listener = net.createServer((socket) => socket.on('data', () => onData?.()));
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    const client = net.connect((listener.address() as net.AddressInfo).port, '127.0.0.1');
    await new Promise((resolve) => client.once('connect', resolve));
    try {
      const seen = new Promise<unknown>((resolve) => {
        onData = () => resolve(server.authenticateApiKey(key.apiKey)); // the poll phase: a new request
      });
      setImmediate(() => {
        expect(server.authenticateApiKey(key.apiKey)).toBeDefined(); // a request the TurnBudget started (check phase)
        expect(cli.revokeKey(key.clientKey)).toBe(true); // the admin CLI commits
        client.write('GET / HTTP/1.1\r\n\r\n'); // and only then does a client send a request
      });
      expect(await seen).toBeUndefined();
    } finally {
      client.destroy();
      await new Promise((resolve) => listener.close(resolve));
    }
  });

  test("this store's own changes apply at once too (they do not move data_version)", () => {
    const key = server.createKey({ name: 'self' });
    expect(server.authenticateApiKey(key.apiKey)).toBeDefined();
    server.setKeyLimits(key.clientKey, { rpm: 3 });
    expect(server.authenticateApiKey(key.apiKey)?.limits?.key.rpm).toBe(3);
    server.revokeKey(key.clientKey);
    expect(server.authenticateApiKey(key.apiKey)).toBeUndefined();
  });

  test('a balance read for reservations follows credits changed by another connection and this store\'s own charges', async () => {
    const key = server.createKey({ name: 'wallet', balanceMicro: 10_000_000 });
    const orgId = key.org.id;
    const usage = { requestId: 'r', route: 'test', principal: null, model: 'm', promptTokens: 1, completionTokens: 1, costMicro: 6_000_000, status: 200, errorCode: null, latencyMs: 1 };
    const first = server.reserve(orgId, 6_000_000);
    expect(first).toBeDefined();
    server.settle(first ?? null, 6_000_000, usage);
    server.flush(); // charged: 4 credits left
    expect(server.reserve(orgId, 5_000_000)).toBeUndefined();
    cli.addCredits(orgId, 2_000_000); // another connection: 6 left
    await nextTurn();
    const second = server.reserve(orgId, 5_000_000);
    expect(second).toBeDefined();
    server.settle(second ?? null, 0, { ...usage, costMicro: 0 });
    cli.setBalance(orgId, 1_000_000);
    await nextTurn();
    expect(server.reserve(orgId, 2_000_000)).toBeUndefined();
    server.setBalance(orgId, 3_000_000); // this store's own change
    expect(server.reserve(orgId, 2_000_000)).toBeDefined();
    server.addCredits(orgId, -3_000_000);
    expect(server.reserve(orgId, 1)).toBeUndefined();
  });
});
