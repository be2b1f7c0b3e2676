/**
 * Keeps a burst of new requests from holding up the streams already running.
 *
 * Starting a request (auth, validation, limits, credits, the call to Ollama) is synchronous work of a
 * millisecond or two; five hundred clients connecting at once would otherwise run all of it in one
 * event-loop turn while every running stream's next token waits behind it. Requests start at once
 * while this turn has spent less than `budgetMs` on starting requests; past that they wait for the
 * next turn, after the pending network reads — the tokens — have been relayed.
 *
 * Used twice a request: at the edge, before routing and reading the body (server/edge.ts), and once
 * the body is in, before the synchronous start (server/dialects/shared.ts). Only Node's own parsing of
 * a new connection and its headers runs outside it.
 */
export class TurnBudget {
  private readonly budgetNs: bigint;
  /** When the first request of this turn started; null when none has yet. */
  private turnStartedAt: bigint | null = null;
  private readonly waiting: Array<() => void> = [];
  private drainScheduled = false;

  constructor(budgetMs: number) {
    this.budgetNs = BigInt(Math.round(budgetMs * 1e6));
  }

  /** Calls `start` now, or in a later turn when this one's budget is spent. */
  run(start: () => void): void {
    if (this.waiting.length === 0 && this.hasRoom()) return start();
    this.waiting.push(start);
    this.scheduleDrain();
  }

  private hasRoom(): boolean {
    const now = process.hrtime.bigint();
    if (this.turnStartedAt === null) {
      this.turnStartedAt = now;
      // The turn ends when the loop gets to its check phase; the next one gets a fresh budget.
      setImmediate(() => (this.turnStartedAt = null));
      return true;
    }
    return now - this.turnStartedAt < this.budgetNs;
  }

  private scheduleDrain(): void {
    if (this.drainScheduled) return;
    this.drainScheduled = true;
    setImmediate(() => {
      this.drainScheduled = false;
      this.turnStartedAt = null;
      // Oldest first, as many as this turn's budget allows; the rest wait for the next turn.
      while (this.waiting.length > 0 && this.hasRoom()) (this.waiting.shift() as () => void)();
      if (this.waiting.length > 0) this.scheduleDrain();
    });
  }
}
