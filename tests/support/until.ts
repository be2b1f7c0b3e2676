/**
 * Polls `check` (sync or async) every 10 ms until it holds, failing with `what` after `timeoutMs`;
 * `lastSeen` adds what the check last observed to that failure, for a failure that is hard to repeat.
 */
export async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000, lastSeen?: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${lastSeen ? `; last seen: ${lastSeen()}` : ''}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
