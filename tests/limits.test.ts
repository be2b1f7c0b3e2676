/**
 * The limiter, periods and allotment counters without HTTP: clock-controlled windows, all-or-nothing
 * takes, token holds corrected at settle, UTC resets, and allotments held and released in SQLite.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Store, type UsageRecord } from '../db/store';
import { GatewayError } from '../lib/errors';
import { allotmentChecks, isoSeconds, periodOf } from '../lib/limits/allotments';
import { Limits } from '../lib/limits/limits';
import { RateLimiter } from '../lib/limits/rate-limiter';
import type { Principal } from '../lib/types';

const T0 = Date.parse('2031-03-31T23:58:30.000Z');

function principal(overrides: Partial<Principal> = {}): Principal {
  return {
    keyId: 7,
    clientKey: 'ck_x',
    keyName: 'k',
    orgId: 'org_a',
    orgName: 'a',
    limits: {
      key: { rpm: null, tpm: null, dailyMicro: null, monthlyMicro: null },
      org: { rpm: null, tpm: null, dailyMicro: null, monthlyMicro: null },
    },
    ...overrides,
  };
}

describe('RateLimiter (fixed minute windows)', () => {
  test('takes up to the limit, refuses after, and resets at the next whole minute', () => {
    let clock = T0;
    const limiter = new RateLimiter(() => clock);
    const spec = [{ key: 'k', limit: 3 }];
    expect([1, 2, 3].map(() => limiter.take(spec, 1).ok)).toEqual([true, true, true]);
    const refused = limiter.take(spec, 1);
    expect(refused.ok).toBe(false);
    if (refused.ok) throw new Error('unreachable');
    expect(refused.blocking).toEqual({ key: 'k', limit: 3, remaining: 0, resetAt: Date.parse('2031-03-31T23:59:00Z') });
    clock += 29_999; // 23:58:59.999: same window
    expect(limiter.take(spec, 1).ok).toBe(false);
    clock += 1; // 23:59:00: a new window
    const next = limiter.take(spec, 1);
    expect(next.ok && next.states[0]).toEqual({ key: 'k', limit: 3, remaining: 2, resetAt: Date.parse('2031-04-01T00:00:00Z') });
  });

  test('several counters: all or nothing, and the refusing one is named', () => {
    const limiter = new RateLimiter(() => T0);
    expect(limiter.take([{ key: 'key', limit: 10 }, { key: 'org', limit: 2 }], 1).ok).toBe(true);
    expect(limiter.take([{ key: 'key', limit: 10 }, { key: 'org', limit: 2 }], 1).ok).toBe(true);
    const third = limiter.take([{ key: 'key', limit: 10 }, { key: 'org', limit: 2 }], 1);
    expect(!third.ok && third.blocking.key).toBe('org');
    // The refusal took nothing from the key's own counter.
    expect(limiter.peek({ key: 'key', limit: 10 }).remaining).toBe(8);
  });

  test('an amount larger than the whole limit is refused even in an empty window', () => {
    const limiter = new RateLimiter(() => T0);
    expect(limiter.take([{ key: 't', limit: 100 }], 101).ok).toBe(false);
    expect(limiter.take([{ key: 't', limit: 100 }], 100).ok).toBe(true);
  });

  test('adjust corrects the current window only', () => {
    let clock = T0;
    const limiter = new RateLimiter(() => clock);
    const taken = limiter.take([{ key: 't', limit: 100 }], 80);
    limiter.adjust(['t'], taken.windowStart, -70);
    expect(limiter.peek({ key: 't', limit: 100 }).remaining).toBe(90);
    clock += 60_000;
    limiter.adjust(['t'], taken.windowStart, +50); // the old window is over: no effect on the new one
    expect(limiter.peek({ key: 't', limit: 100 }).remaining).toBe(100);
  });
});

describe('Limits (admission rules)', () => {
  test('requests per minute: headers of the tightest counter, then a 429 with Retry-After and headers', () => {
    let clock = T0;
    const limits = new Limits({ now: () => clock });
    const p = principal({ limits: { key: { rpm: 5, tpm: null, dailyMicro: null, monthlyMicro: null }, org: { rpm: 2, tpm: null, dailyMicro: null, monthlyMicro: null } } });
    expect(limits.admitRequest(p)).toEqual({ 'X-RateLimit-Limit': '2', 'X-RateLimit-Remaining': '1', 'X-RateLimit-Reset': '2031-03-31T23:59:00Z' });
    limits.admitRequest(p);
    let error: unknown;
    try {
      limits.admitRequest(p);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(GatewayError);
    const e = error as GatewayError;
    expect(e.code).toBe('rate_limited');
    expect(e.message).toBe('Rate limit reached: 2 requests per minute for organisation "a".');
    expect(e.retryAfterSeconds).toBe(30);
    expect(e.headers).toEqual({ 'X-RateLimit-Limit': '2', 'X-RateLimit-Remaining': '0', 'X-RateLimit-Reset': '2031-03-31T23:59:00Z' });
    clock += 30_000;
    expect(limits.admitRequest(p)['X-RateLimit-Remaining']).toBe('1');
  });

  test('no request limit: no headers and nothing counted', () => {
    expect(new Limits({ now: () => T0 }).admitRequest(principal())).toEqual({});
    expect(new Limits().admitRequest({ keyId: 1, clientKey: 'c', keyName: 'n', orgId: 'o', orgName: 'o' })).toEqual({});
  });

  test('tokens per minute: a hold is replaced by the actual count at commit, once', () => {
    const limits = new Limits({ now: () => T0 });
    const p = principal({ limits: { key: { rpm: null, tpm: 100, dailyMicro: null, monthlyMicro: null }, org: { rpm: null, tpm: null, dailyMicro: null, monthlyMicro: null } } });
    const a = limits.admitTokens(p, 60);
    expect(() => limits.admitTokens(p, 60)).toThrow(/Rate limit reached: 100 tokens per minute for this key/);
    a?.commit(10);
    a?.commit(0); // a second commit changes nothing
    expect(limits.limiter.peek({ key: 'key:7:tpm', limit: 100 }).remaining).toBe(90);
    expect(limits.admitTokens(p, 60)).not.toBeNull();
    expect(() => limits.admitTokens(p, 500)).toThrow(/more than the limit of 100 tokens per minute/);
    expect(limits.admitTokens(principal(), 500)).toBeNull();
  });

  test('allow-list and expiry', () => {
    const limits = new Limits({ now: () => T0 });
    expect(() => limits.assertModelAllowed(principal({ allowedModels: ['a', 'b'] }), 'c')).toThrow("This key may not use the model 'c'.");
    expect(limits.assertModelAllowed(principal({ allowedModels: ['a', 'b'] }), 'b')).toBe('exact');
    expect(limits.assertModelAllowed(principal({ allowedModels: null }), 'c')).toBe('exact');
    // Named only in another spelling: the resolved model decides (ModelCatalog.resolveAllowed).
    expect(limits.assertModelAllowed(principal({ allowedModels: ['llama3.2'] }), 'Llama3.2:latest')).toBe('spelling');
    expect(() => limits.assertModelAllowed(principal({ allowedModels: ['llama3.2'] }), 'llama3.3')).toThrow("This key may not use the model 'llama3.3'.");
    expect(() => limits.assertNotExpired(principal({ expiresAt: '2031-03-31T23:58:30.000Z' }))).toThrow(/expired/);
    expect(() => limits.assertNotExpired(principal({ expiresAt: '2031-03-31T23:58:30.001Z' }))).not.toThrow();
  });
});

describe('UTC periods', () => {
  test('days reset at UTC midnight, months on the first', () => {
    expect(periodOf('daily', T0)).toEqual({ id: 'day:2031-03-31', start: new Date('2031-03-31T00:00:00Z'), resetAt: new Date('2031-04-01T00:00:00Z') });
    expect(periodOf('monthly', T0)).toEqual({ id: 'month:2031-03', start: new Date('2031-03-01T00:00:00Z'), resetAt: new Date('2031-04-01T00:00:00Z') });
    expect(periodOf('monthly', Date.parse('2031-12-31T23:59:59.999Z')).resetAt).toEqual(new Date('2032-01-01T00:00:00Z'));
    expect(periodOf('daily', Date.parse('2032-02-29T12:00:00Z')).id).toBe('day:2032-02-29');
  });

  test('checks for the key and the organisation, only for allotments that are set', () => {
    const p = principal({ limits: { key: { rpm: null, tpm: null, dailyMicro: 5, monthlyMicro: null }, org: { rpm: null, tpm: null, dailyMicro: null, monthlyMicro: 9 } } });
    expect(allotmentChecks(p, T0).map((c) => [c.scope, c.period, c.limitMicro, c.resetAt])).toEqual([
      ['key:7', 'day:2031-03-31', 5, '2031-04-01T00:00:00Z'],
      ['org:org_a', 'month:2031-03', 9, '2031-04-01T00:00:00Z'],
    ]);
  });
});

describe('allotments in the store', () => {
  let dir: string;
  let store: Store;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gateway-limits-'));
    store = new Store(path.join(dir, 'g.db'));
  });
  afterEach(() => {
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const usage = (p: Principal, cost: number): UsageRecord => ({
    requestId: 'r', route: 'test', principal: p, model: 'm', promptTokens: 1, completionTokens: 1, costMicro: cost, status: 200, errorCode: null, latencyMs: 1,
  });

  test('reserve holds the worst case, settle keeps the real cost, a spent allotment refuses with AimiChat fields', () => {
    const key = store.createKey({ name: 'a' }); // unlimited balance: the allotment alone limits it
    store.setKeyLimits(key.clientKey, { dailyMicro: 1_000_000 });
    const p = store.authenticateClient(key.clientKey, key.clientSecret) as Principal;
    const checks = allotmentChecks(p, T0);
    const r1 = store.reserve(p.orgId, 600_000, checks);
    expect(r1?.id).not.toBeNull();
    expect(store.allotmentSpent(`key:${p.keyId}`, 'day:2031-03-31')).toBe(600_000);
    // 600k held + 600k would pass the limit: refused, and nothing moved.
    expect(() => store.reserve(p.orgId, 600_000, checks)).toThrow('Daily credit limit reached');
    expect(store.allotmentSpent(`key:${p.keyId}`, 'day:2031-03-31')).toBe(600_000);
    store.settle(r1 as NonNullable<typeof r1>, 250_000, usage(p, 250_000));
    expect(store.allotmentSpent(`key:${p.keyId}`, 'day:2031-03-31')).toBe(250_000);
    const r2 = store.reserve(p.orgId, 750_000, checks);
    store.settle(r2 as NonNullable<typeof r2>, 750_000, usage(p, 750_000));
    let error: GatewayError | undefined;
    try {
      store.reserve(p.orgId, 0, checks);
    } catch (err) {
      error = err as GatewayError;
    }
    expect(error?.code).toBe('quota_exceeded');
    expect(error?.quota).toEqual({ limit: 1, used: 1, resetAt: '2031-04-01T00:00:00Z' });
    expect(error?.retryAfterSeconds).toBe(90);
    // The next day is a new counter.
    expect(store.reserve(p.orgId, 100, allotmentChecks(p, T0 + 90_000))).toBeDefined();
  });

  test('a quota refusal rolls back the balance taken in the same transaction', () => {
    const key = store.createKey({ name: 'b', balanceMicro: 5_000_000 });
    store.setOrgLimits(key.org.id, { monthlyMicro: 1_000_000 });
    const p = store.authenticateClient(key.clientKey, key.clientSecret) as Principal;
    expect(() => store.reserve(p.orgId, 2_000_000, allotmentChecks(p, T0))).toThrow('Monthly credit limit reached');
    expect(store.getOrg(p.orgId)?.balanceMicro).toBe(5_000_000);
    expect(store.db.prepare('SELECT COUNT(*) AS n FROM reservations').get()).toEqual({ n: 0 });
  });

  test('an allotment held in flight is in memory only: a crash (a new store on the file) gives it back', () => {
    const key = store.createKey({ name: 'c', balanceMicro: 5_000_000 });
    store.setKeyLimits(key.clientKey, { dailyMicro: 1_000_000 });
    const p = store.authenticateClient(key.clientKey, key.clientSecret) as Principal;
    store.reserve(p.orgId, 400_000, allotmentChecks(p, T0));
    expect(store.allotmentSpent(`key:${p.keyId}`, 'day:2031-03-31')).toBe(400_000);
    const restarted = new Store(store.db.name);
    try {
      expect(restarted.allotmentSpent(`key:${p.keyId}`, 'day:2031-03-31')).toBe(0);
      expect(restarted.getOrg(p.orgId)?.balanceMicro).toBe(5_000_000);
    } finally {
      restarted.close();
    }
  });

  test('a counter created mid-period starts at what the usage log already billed in it', () => {
    const key = store.createKey({ name: 'd' });
    const p = store.authenticateClient(key.clientKey, key.clientSecret) as Principal;
    store.recordUsage(usage(p, 300_000)); // billed today (real clock) before any allotment existed
    store.setKeyLimits(key.clientKey, { dailyMicro: 1_000_000 });
    const fresh = store.authenticateClient(key.clientKey, key.clientSecret) as Principal;
    const today = Date.now();
    expect(() => store.reserve(p.orgId, 800_000, allotmentChecks(fresh, today))).toThrow('Daily credit limit reached');
    expect(store.reserve(p.orgId, 700_000, allotmentChecks(fresh, today))).toBeDefined();
  });

  test('a request in flight when an allotment is set counts towards it once it settles', () => {
    const key = store.createKey({ name: 'e', balanceMicro: 100_000_000 });
    const now = Date.now(); // settlements are dated by the real clock
    const before = store.authenticateClient(key.clientKey, key.clientSecret) as Principal;
    const inFlight = store.reserve(before.orgId, 5_000_000, allotmentChecks(before, now)); // no allotment yet: holds none
    store.setKeyLimits(key.clientKey, { dailyMicro: 6_000_000 });
    const after = store.authenticateClient(key.clientKey, key.clientSecret) as Principal;
    // The day's counter is made now, from the usage log, which does not have the request in flight.
    const second = store.reserve(after.orgId, 1_000_000, allotmentChecks(after, now));
    store.settle(inFlight as NonNullable<typeof inFlight>, 5_000_000, usage(before, 5_000_000));
    store.settle(second as NonNullable<typeof second>, 1_000_000, usage(after, 1_000_000));
    expect(store.allotmentSpent(`key:${after.keyId}`, periodOf('daily', now).id)).toBe(6_000_000);
    expect(() => store.reserve(after.orgId, 1, allotmentChecks(after, now))).toThrow('Daily credit limit reached');
  });

  test('spend while an allotment is lifted still counts when it is set again in the same period', () => {
    const key = store.createKey({ name: 'f', balanceMicro: 100_000_000 });
    const now = Date.now();
    store.setOrgLimits(key.org.id, { monthlyMicro: 10_000_000 });
    const limited = store.authenticateClient(key.clientKey, key.clientSecret) as Principal;
    const first = store.reserve(limited.orgId, 2_000_000, allotmentChecks(limited, now));
    store.settle(first as NonNullable<typeof first>, 2_000_000, usage(limited, 2_000_000));
    store.setOrgLimits(key.org.id, { monthlyMicro: null });
    const free = store.authenticateClient(key.clientKey, key.clientSecret) as Principal;
    const meanwhile = store.reserve(free.orgId, 3_000_000, allotmentChecks(free, now));
    store.settle(meanwhile as NonNullable<typeof meanwhile>, 3_000_000, usage(free, 3_000_000));
    store.setOrgLimits(key.org.id, { monthlyMicro: 10_000_000 });
    expect(store.allotmentSpent(`org:${limited.orgId}`, periodOf('monthly', now).id)).toBe(5_000_000);
  });

  test('a counter made before a restart is still added to by spend while its allotment is lifted', () => {
    const key = store.createKey({ name: 'g', balanceMicro: 100_000_000 });
    const now = Date.now();
    store.setOrgLimits(key.org.id, { monthlyMicro: 10_000_000 });
    const limited = store.authenticateClient(key.clientKey, key.clientSecret) as Principal;
    const first = store.reserve(limited.orgId, 2_000_000, allotmentChecks(limited, now));
    store.settle(first as NonNullable<typeof first>, 2_000_000, usage(limited, 2_000_000));
    store.setOrgLimits(key.org.id, { monthlyMicro: null });
    store.flush();
    const restarted = new Store(store.db.name);
    try {
      const free = restarted.authenticateClient(key.clientKey, key.clientSecret) as Principal;
      const meanwhile = restarted.reserve(free.orgId, 3_000_000, allotmentChecks(free, now)); // holds no counter
      restarted.settle(meanwhile as NonNullable<typeof meanwhile>, 3_000_000, usage(free, 3_000_000));
      restarted.flush();
      expect(restarted.allotmentSpent(`org:${limited.orgId}`, periodOf('monthly', now).id)).toBe(5_000_000);
    } finally {
      restarted.close();
    }
  });

  test('limits, allow-list and expiry are read with the principal on every authentication', () => {
    const key = store.createKey({ name: 'e', orgName: 'team' });
    expect(store.authenticateClient(key.clientKey, key.clientSecret)).toMatchObject({
      limits: { key: { rpm: null, tpm: null, dailyMicro: null, monthlyMicro: null }, org: { rpm: null, tpm: null, dailyMicro: null, monthlyMicro: null } },
      allowedModels: null,
      expiresAt: null,
    });
    store.setKeyLimits(key.clientKey, { rpm: 5, allowedModels: ['m1'], expiresAt: '2031-01-01T00:00:00.000Z' });
    store.setOrgLimits(key.org.id, { tpm: 1000, dailyMicro: 2 });
    expect(store.authenticateApiKey(key.apiKey)).toMatchObject({
      limits: { key: { rpm: 5, tpm: null }, org: { tpm: 1000, dailyMicro: 2 } },
      allowedModels: ['m1'],
      expiresAt: '2031-01-01T00:00:00.000Z',
    });
    store.setKeyLimits(key.clientKey, { rpm: null });
    expect(store.authenticateApiKey(key.apiKey)?.limits?.key.rpm).toBeNull();
  });
});

test('isoSeconds writes any time as Date does, without milliseconds, whatever it wrote before', () => {
  // It keeps the last second it formatted: times in the same second, the next one, and far apart.
  const times = [T0, T0 + 1, T0 + 999, T0 + 1000, T0 - 1, 0, -1, -1000, -1001, 999, 1_700_000_000_999];
  for (let i = 0; i < 5000; i++) times.push(Math.floor(Math.sin(i) * 4e12) + (i % 7));
  for (const at of times) {
    const expected = new Date(at).toISOString().replace(/\.\d{3}Z$/, 'Z');
    expect({ at, iso: isoSeconds(at) }).toEqual({ at, iso: expected });
    expect(isoSeconds(new Date(at))).toBe(expected);
  }
});
