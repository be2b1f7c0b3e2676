import { capCost, costOf, creditsToMicro } from '../lib/pricing';

describe('pricing arithmetic', () => {
  test.each([
    ['0.002', 2000],
    ['12.5', 12_500_000],
    ['1', 1_000_000],
    [0.1, 100_000],
    ['0.0000019', 1],
    ['-3', -3_000_000],
  ])('creditsToMicro(%j) = %d, exactly', (input, micro) => {
    expect(creditsToMicro(input)).toBe(micro);
  });

  test.each(['abc', '1e3', '', '1.2.3'])('creditsToMicro rejects %j', (input) => {
    expect(() => creditsToMicro(input)).toThrow(RangeError);
  });

  test('a non-zero price never bills zero, and costs round up per side', () => {
    expect(costOf({ promptTokens: 1, completionTokens: 1 }, { inputMicroPer1k: 1, outputMicroPer1k: 2000 })).toEqual({ inputMicro: 1, outputMicro: 2, totalMicro: 3 });
    expect(costOf({ promptTokens: 0, completionTokens: 0 }, { inputMicroPer1k: 5, outputMicroPer1k: 5 }).totalMicro).toBe(0);
  });

  test('capCost never exceeds the reservation and trims output first', () => {
    expect(capCost({ inputMicro: 50, outputMicro: 100, totalMicro: 150 }, 120)).toEqual({ inputMicro: 50, outputMicro: 70, totalMicro: 120 });
    expect(capCost({ inputMicro: 50, outputMicro: 100, totalMicro: 150 }, 200)).toEqual({ inputMicro: 50, outputMicro: 100, totalMicro: 150 });
  });
});
