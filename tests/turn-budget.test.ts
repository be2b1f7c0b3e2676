/**
 * The per-turn budget for starting requests: within budget they start at once; past it they wait for
 * a later turn, in arrival order, so pending network reads (running streams' tokens) go first.
 */
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
