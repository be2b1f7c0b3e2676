/**
 * lib/abort.ts: several parties listen to one request's abort signal through one real listener.
 */
import { asAbortSignal, onAbort, ownAbort } from '../lib/abort';

describe('onAbort', () => {
  test('each party is called once, in the order it started listening, through one listener on the signal', () => {
    const controller = new AbortController();
    const added = jest.spyOn(controller.signal, 'addEventListener');
    const calls: string[] = [];
    onAbort(controller.signal, () => calls.push('core'));
    onAbort(controller.signal, () => calls.push('queue'));
    onAbort(controller.signal, () => calls.push('answer'));
    expect(added).toHaveBeenCalledTimes(1);
    controller.abort();
    controller.signal.dispatchEvent(new Event('abort')); // a second event calls nobody again
    expect(calls).toEqual(['core', 'queue', 'answer']);
  });

  test('a party that stopped listening is not called, and the others still are', () => {
    const controller = new AbortController();
    const calls: string[] = [];
    const stopCore = onAbort(controller.signal, () => calls.push('core'));
    onAbort(controller.signal, () => calls.push('answer'));
    stopCore();
    stopCore(); // twice is harmless
    controller.abort();
    expect(calls).toEqual(['answer']);
  });

  test('a party that stops another while the abort is told: the other is not called', () => {
    const controller = new AbortController();
    const calls: string[] = [];
    let stopSecond = (): void => undefined;
    onAbort(controller.signal, () => {
      calls.push('first');
      stopSecond();
    });
    stopSecond = onAbort(controller.signal, () => calls.push('second'));
    controller.abort();
    expect(calls).toEqual(['first']);
  });

  test('as with addEventListener, a party that starts listening after the abort is never called', () => {
    const controller = new AbortController();
    controller.abort();
    const listener = jest.fn();
    onAbort(controller.signal, listener);
    expect(listener).not.toHaveBeenCalled();
  });

  test('signals do not share parties', () => {
    const a = new AbortController();
    const b = new AbortController();
    const heard: string[] = [];
    onAbort(a.signal, () => heard.push('a'));
    onAbort(b.signal, () => heard.push('b'));
    b.abort();
    expect(heard).toEqual(['b']);
  });
});

describe('ownAbort', () => {
  test('a plain signal: its abort tells the parties directly, in order, once, with an AbortError reason', () => {
    const gone = ownAbort();
    expect(gone.signal).not.toBeInstanceOf(AbortSignal);
    const calls: string[] = [];
    onAbort(gone.signal, () => calls.push('core'));
    onAbort(gone.signal, () => calls.push('answer'));
    expect(gone.signal.aborted).toBe(false);
    gone.abort();
    gone.abort(); // once only
    expect(gone.signal.aborted).toBe(true);
    expect(gone.signal.reason).toMatchObject({ name: 'AbortError' });
    expect(calls).toEqual(['core', 'answer']);
  });

  test('asAbortSignal gives fetch a real signal that aborts with it (and an AbortSignal as it is)', () => {
    const gone = ownAbort();
    const real = asAbortSignal(gone.signal);
    expect(real).toBeInstanceOf(AbortSignal);
    expect(asAbortSignal(gone.signal)).toBe(real); // one per signal, however many calls use it
    const heard = jest.fn();
    real.addEventListener('abort', heard);
    gone.abort();
    expect(real.aborted).toBe(true);
    expect(heard).toHaveBeenCalledTimes(1);
    expect(asAbortSignal(ownAbort().signal).aborted).toBe(false);
    const already = ownAbort();
    already.abort();
    expect(asAbortSignal(already.signal).aborted).toBe(true);
    const native = new AbortController().signal;
    expect(asAbortSignal(native)).toBe(native);
  });
});
