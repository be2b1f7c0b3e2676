/**
 * Settlements of one event-loop turn share one commit; nothing reads around them, and a refusal is
 * never an artefact of a settlement still waiting for its commit.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SERVER_BUSY_TIMEOUT_MS, Store, type UsageRecord } from '../db/store';

const usage = (requestId: string, costMicro: number): UsageRecord => ({
  requestId,
  route: 'test',
  principal: null,
  model: 'm',
  promptTokens: 1,
  completionTokens: 1,
  costMicro,
  status: 200,
  errorCode: null,
  latencyMs: 1,
});

describe('grouped settlement commits', () => {
  let dir: string;
  let store: Store;
  let observer: Store; // another connection, as the admin CLI would be

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gateway-commits-'));
    store = new Store(path.join(dir, 'g.db'));
    observer = new Store(path.join(dir, 'g.db'));
  });
  afterEach(() => {
    store.close();
    observer.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const commitsSeenByOthers = () => observer.db.pragma('data_version', { simple: true }) as number;

  test('twenty settlements in one turn are one commit, written by the end of the turn', async () => {
    const key = store.createKey({ name: 'team', balanceMicro: 10_000_000 });
    const before = commitsSeenByOthers();
    for (let i = 0; i < 20; i++) {
      const reservation = store.reserve(key.org.id, 100_000);
      store.settle(reservation ?? null, 40_000, usage(`req-${i}`, 40_000));
    }
    expect(commitsSeenByOthers()).toBe(before); // nothing written yet
    await new Promise((resolve) => setImmediate(resolve));
    expect(commitsSeenByOthers()).toBe(before + 1);
    expect(observer.db.prepare('SELECT COUNT(*) AS n, SUM(cost_micro) AS cost FROM usage').get()).toEqual({ n: 20, cost: 800_000 });
    expect(observer.getOrg(key.org.id)?.balanceMicro).toBe(10_000_000 - 800_000);
  });

  test('with a commit window, settlements of several turns share one commit; reads still see them at once', async () => {
    store.close();
    // Wider than one turn, so a loaded test machine cannot close the window between turns.
    const windowMs = 200;
    store = new Store(path.join(dir, 'g.db'), { commitWindowMs: windowMs });
    const key = store.createKey({ name: 'window', balanceMicro: 10_000_000 });
    const before = commitsSeenByOthers();
    for (let i = 0; i < 3; i++) {
      store.settle(store.reserve(key.org.id, 100_000) ?? null, 40_000, usage(`win-${i}`, 40_000));
      await new Promise((resolve) => setImmediate(resolve)); // a turn apart, as one connection's requests are
    }
    expect(commitsSeenByOthers()).toBe(before); // still inside the window
    await new Promise((resolve) => setTimeout(resolve, windowMs + 50));
    expect(commitsSeenByOthers()).toBe(before + 1);
    expect(observer.db.prepare("SELECT COUNT(*) AS n FROM usage WHERE request_id LIKE 'win-%'").get()).toEqual({ n: 3 });

    store.settle(store.reserve(key.org.id, 100_000) ?? null, 40_000, usage('win-read', 40_000));
    expect(store.getOrg(key.org.id)?.balanceMicro).toBe(10_000_000 - 4 * 40_000); // a read writes first
  });

  test('a usage row is dated when its request was admitted, even when the row is written later', async () => {
    store.close();
    store = new Store(path.join(dir, 'g.db'), { busyTimeoutMs: 20 });
    const key = store.createKey({ name: 'long', balanceMicro: 1_000_000 });
    observer.db.exec('BEGIN IMMEDIATE'); // the write waits for the lock, then for the retry
    const settledAt = Date.now();
    store.settle(store.reserve(key.org.id, 100_000) ?? null, 10_000, { ...usage('long-1', 10_000), latencyMs: 90_000 });
    await new Promise((resolve) => setTimeout(resolve, 300));
    observer.db.exec('COMMIT');
    await new Promise((resolve) => setTimeout(resolve, 400)); // the retry writes it
    const { ts } = observer.db.prepare("SELECT ts FROM usage WHERE request_id = 'long-1'").get() as { ts: string };
    // Admitted 90 s before it was settled; the 300+ ms it then waited to be written do not move it.
    expect(Date.parse(ts)).toBeGreaterThanOrEqual(settledAt - 90_000 - 5);
    expect(Date.parse(ts)).toBeLessThanOrEqual(settledAt - 90_000 + 50);
  });

  test('reads through the store see pending settlements written first', () => {
    const key = store.createKey({ name: 'reader', balanceMicro: 1_000_000 });
    store.settle(store.reserve(key.org.id, 500_000) ?? null, 200_000, usage('read-1', 200_000));
    expect(store.getOrg(key.org.id)?.balanceMicro).toBe(800_000); // charged, and the hold let go
    expect(store.db.prepare('SELECT request_id FROM usage').all()).toEqual([{ request_id: 'read-1' }]);
  });

  test('an admission that only a waiting settlement would block is not refused', () => {
    const key = store.createKey({ name: 'tight', balanceMicro: 1_000_000 });
    const first = store.reserve(key.org.id, 900_000);
    store.settle(first ?? null, 100_000, usage('tight-1', 100_000)); // 800_000 comes back once written
    const second = store.reserve(key.org.id, 850_000);
    expect(second?.amountMicro).toBe(850_000);
    expect(store.reserve(key.org.id, 100_000)).toBeUndefined(); // 900_000 left, 850_000 of it held
  });

  test('a write the database refuses (locked by another connection) is kept, its hold too, and written once it can be', async () => {
    const failures: unknown[] = [];
    store.close();
    // The server's own setting: a lock is waited for briefly, never for the CLI's 5 s.
    store = new Store(path.join(dir, 'g.db'), { onWriteError: (err) => failures.push(err), busyTimeoutMs: SERVER_BUSY_TIMEOUT_MS });
    expect(store.db.pragma('busy_timeout', { simple: true })).toBe(SERVER_BUSY_TIMEOUT_MS);
    expect(observer.db.pragma('busy_timeout', { simple: true })).toBe(5000);
    const key = store.createKey({ name: 'locked', balanceMicro: 1_000_000 });
    observer.db.exec('BEGIN IMMEDIATE'); // e.g. a long admin transaction
    store.settle(store.reserve(key.org.id, 600_000) ?? null, 250_000, usage('locked-1', 250_000));
    const blockedFrom = Date.now();
    await new Promise((resolve) => setImmediate(resolve));
    expect(Date.now() - blockedFrom).toBeLessThan(SERVER_BUSY_TIMEOUT_MS + 200); // the event loop waited that long at most
    expect(failures).toHaveLength(1);
    expect(String(failures[0])).toMatch(/locked|busy/i);
    expect(store.reserve(key.org.id, 500_000)).toBeUndefined(); // the hold stays until the charge is written
    observer.db.exec('COMMIT');
    await new Promise((resolve) => setTimeout(resolve, 600)); // the retry
    expect(observer.getOrg(key.org.id)?.balanceMicro).toBe(750_000);
    expect(observer.db.prepare("SELECT COUNT(*) AS n FROM usage WHERE request_id = 'locked-1'").get()).toEqual({ n: 1 });
    expect(store.reserve(key.org.id, 700_000)?.amountMicro).toBe(700_000);
  });

  test("a day's first allotment check that finds the database locked is a 503 to retry, waiting on the lock no more than twice", () => {
    store.close();
    const waitMs = 200;
    store = new Store(path.join(dir, 'g.db'), { busyTimeoutMs: waitMs });
    const key = store.createKey({ name: 'daily', balanceMicro: 1_000_000 });
    const today = new Date().toISOString().slice(0, 10);
    const check = {
      scope: `org:${key.org.id}`,
      period: `day:${today}`,
      holder: { kind: 'org' as const, id: key.org.id },
      kind: 'daily' as const,
      limitMicro: 500_000,
      periodStart: `${today}T00:00:00.000Z`,
      resetAt: `${today}T23:59:59.999Z`,
      checkedAt: Date.now(),
    };
    store.settle(store.reserve(key.org.id, 10_000) ?? null, 10_000, usage('waiting-1', 10_000)); // a settlement waits for its commit
    observer.db.exec('BEGIN IMMEDIATE'); // e.g. a long admin transaction
    const started = Date.now();
    try {
      expect(() => store.reserve(key.org.id, 100_000, [check])).toThrow(expect.objectContaining({ code: 'overloaded', retryAfterSeconds: 1 }));
      // The waiting settlement's write, then the seed: two waits. (Retrying both on the refusal made five.)
      expect(Date.now() - started).toBeLessThan(3.5 * waitMs);
    } finally {
      observer.db.exec('COMMIT');
    }
    expect(store.reserve(key.org.id, 100_000, [check])?.amountMicro).toBe(100_000); // the counter is seeded now
  });

  test('a settlement the database refuses for good is dropped and reported; the rest of its commit is written', async () => {
    const failures: unknown[] = [];
    store.close();
    store = new Store(path.join(dir, 'g.db'), { onWriteError: (err) => failures.push(err) });
    const key = store.createKey({ name: 'poison', balanceMicro: 1_000_000 });
    const settleOne = (id: string, latencyMs: number) =>
      store.settle(store.reserve(key.org.id, 100_000) ?? null, 50_000, { ...usage(id, 50_000), latencyMs });
    settleOne('good-1', 1);
    settleOne('bad-1', Number.NaN); // stands for any row the database refuses (NOT NULL here)
    settleOne('good-2', 1);
    await new Promise((resolve) => setImmediate(resolve));
    expect(observer.db.prepare('SELECT request_id FROM usage ORDER BY id').all()).toEqual([{ request_id: 'good-1' }, { request_id: 'good-2' }]);
    expect(failures).toHaveLength(1);
    expect(String(failures[0])).toContain('bad-1');
    // Charged for the two written, nothing held any more.
    expect(store.getOrg(key.org.id)?.balanceMicro).toBe(900_000);
    expect(store.reserve(key.org.id, 900_000)?.amountMicro).toBe(900_000);
  });

  test('closing while the database stays locked reports the rows it could not write', () => {
    const failures: unknown[] = [];
    store.close();
    store = new Store(path.join(dir, 'g.db'), { onWriteError: (err) => failures.push(err) });
    store.db.pragma('busy_timeout = 10');
    const key = store.createKey({ name: 'shutdown', balanceMicro: 1_000_000 });
    observer.db.exec('BEGIN IMMEDIATE');
    store.settle(store.reserve(key.org.id, 100_000) ?? null, 100_000, usage('lost-at-close', 100_000));
    store.close();
    observer.db.exec('ROLLBACK');
    expect(failures.map(String).some((f) => f.includes('lost-at-close') && f.includes('locked until shutdown'))).toBe(true);
    store = new Store(path.join(dir, 'g.db')); // for afterEach
  });

  test('what an organisation can spend never shows below zero when credits are taken away mid-flight', () => {
    const key = store.createKey({ name: 'taken', balanceMicro: 1_000_000 });
    expect(store.reserve(key.org.id, 900_000)).toBeDefined();
    store.addCredits(key.org.id, -500_000); // the stored balance is 500_000, 900_000 of it held
    expect(store.getOrg(key.org.id)?.balanceMicro).toBe(0);
    expect(store.reserve(key.org.id, 0)?.amountMicro).toBe(0); // a free request still goes through
    expect(store.reserve(key.org.id, 1)).toBeUndefined();
  });

  test('closing writes what is still waiting', () => {
    const key = store.createKey({ name: 'closing', balanceMicro: 1_000_000 });
    store.settle(store.reserve(key.org.id, 300_000) ?? null, 300_000, usage('close-1', 300_000));
    store.close();
    expect(observer.getOrg(key.org.id)?.balanceMicro).toBe(700_000);
    store = new Store(path.join(dir, 'g.db')); // for afterEach
  });
});
