/**
 * The per-turn budget for starting requests: within budget they start at once; past it they wait for
 * a later turn, in arrival order, so pending network reads (running streams' tokens) go first.
 */
import type { Request, Response } from 'express';
import { edge } from '../server/edge';
import { TurnBudget } from '../server/turn-budget';

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Busy-waits `ms`: the synchronous work of starting a request. */
function work(ms: number): void {
  const until = process.hrtime.bigint() + BigInt(ms * 1e6);
  while (process.hrtime.bigint() < until);
}

describe('TurnBudget', () => {
  test('requests start at once while the turn has budget left', () => {
    const budget = new TurnBudget(1_000);
    const started: number[] = [];
    for (let i = 0; i < 5; i++) budget.run(() => started.push(i));
    expect(started).toEqual([0, 1, 2, 3, 4]);
  });

  test('past the budget the rest wait for later turns, oldest first, a budget at a time', async () => {
    const budget = new TurnBudget(5);
    // Starts in one synchronous run share a batch number: the immediate that moves it on can only
    // fire once the loop has turned.
    let batch = 0;
    let markPending = false;
    const started: Array<{ id: number; turn: number }> = [];
    for (let i = 0; i < 8; i++) {
      budget.run(() => {
        if (!markPending) {
          markPending = true;
          setImmediate(() => {
            batch++;
            markPending = false;
          });
        }
        started.push({ id: i, turn: batch });
        work(3); // 3 ms each: at most two fit in a 5 ms budget (the second starts at 3 ms)
      });
    }
    let turn = 0;
    expect(started.length).toBeGreaterThanOrEqual(1);
    expect(started.length).toBeLessThan(8);
    while (started.length < 8 && turn < 50) {
      await nextTurn();
      turn++;
    }
    expect(started.map((s) => s.id)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    const perTurn = new Map<number, number>();
    for (const s of started) perTurn.set(s.turn, (perTurn.get(s.turn) ?? 0) + 1);
    expect(Math.max(...perTurn.values())).toBeLessThanOrEqual(2);
    expect(perTurn.size).toBeGreaterThanOrEqual(4);
  });

  test('a request arriving while others wait queues behind them rather than jumping the line', async () => {
    const budget = new TurnBudget(0);
    const started: string[] = [];
    budget.run(() => started.push('first'));
    budget.run(() => started.push('second'));
    expect(started).toEqual(['first']);
    await nextTurn();
    budget.run(() => started.push('third'));
    await nextTurn();
    await nextTurn();
    expect(started).toEqual(['first', 'second', 'third']);
  });
});

describe('the edge under a turn budget', () => {
  /** Just what the edge touches of a request and a reply. */
  const fakeExchange = (method = 'POST') => {
    const headers = new Map<string, unknown>();
    const req = { method, headers: {} } as unknown as Request;
    const res = {
      locals: {},
      setHeader: (name: string, value: unknown) => headers.set(name.toLowerCase(), value),
      setHeaders: (all: Map<string, unknown>) => all.forEach((value, name) => headers.set(name.toLowerCase(), value)),
      once: () => undefined,
    } as unknown as Response;
    return { req, res, headers };
  };

  test("a burst's requests are routed a budget at a time, in order, each stamped on arrival", async () => {
    const handle = edge([], new TurnBudget(0));
    const routed: number[] = [];
    const exchanges = [0, 1, 2].map(() => fakeExchange());
    exchanges.forEach(({ req, res }, i) => handle(req, res, () => routed.push(i)));
    // The first is routed at once; the others wait for later turns, where running streams' reads come first.
    expect(routed).toEqual([0]);
    // Every request has its id and security headers from its arrival, routed or not.
    for (const { res, headers } of exchanges) {
      expect(headers.get('x-request-id')).toMatch(/^req_[0-9a-f]{32}$/);
      expect(headers.get('x-content-type-options')).toBe('nosniff');
      expect((res.locals as { startedAt?: number }).startedAt).toEqual(expect.any(Number));
    }
    for (let turn = 0; turn < 10 && routed.length < 3; turn++) await nextTurn();
    expect(routed).toEqual([0, 1, 2]);
  });

  test('reads (health checks, listings) are routed at once, even behind a burst', () => {
    const handle = edge([], new TurnBudget(0));
    const routed: string[] = [];
    for (const method of ['POST', 'POST', 'GET', 'HEAD', 'POST']) {
      const { req, res } = fakeExchange(method);
      handle(req, res, () => routed.push(method));
    }
    expect(routed).toEqual(['POST', 'GET', 'HEAD']);
  });

  test('without a budget every request is routed at once', () => {
    const handle = edge([]);
    const routed: number[] = [];
    for (let i = 0; i < 3; i++) {
      const { req, res } = fakeExchange();
      handle(req, res, () => routed.push(i));
    }
    expect(routed).toEqual([0, 1, 2]);
  });
});
