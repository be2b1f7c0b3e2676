/**
 * Configuration bounds that protect users from a setting that silently does the opposite of what it
 * says: a timer past Node's limit fires at once, not never.
 */
import { loadConfig } from '../server/config';

describe('configuration', () => {
  test('a duration past 2^31 - 1 ms is refused by name, not turned into 1 ms', () => {
    expect(() => loadConfig({ SSE_STALL_MS: '2147483648' })).toThrow(/SSE_STALL_MS/);
    expect(() => loadConfig({ SSE_KEEP_ALIVE_MS: '1e12' })).toThrow(/SSE_KEEP_ALIVE_MS/);
    expect(() => loadConfig({ OLLAMA_HEADERS_TIMEOUT_MS: '99999999999' })).toThrow(/OLLAMA_HEADERS_TIMEOUT_MS/);
    expect(loadConfig({ SSE_STALL_MS: '2147483647' }).SSE_STALL_MS).toBe(2_147_483_647);
  });

  test('SSE_STALL_MS: 60 s unless set; 0 means never give a stream up', () => {
    expect(loadConfig({}).SSE_STALL_MS).toBe(60_000);
    expect(loadConfig({ SSE_STALL_MS: '0' }).SSE_STALL_MS).toBe(0);
    expect(() => loadConfig({ SSE_STALL_MS: '-1' })).toThrow(/SSE_STALL_MS/);
  });
});
