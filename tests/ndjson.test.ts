/**
 * The NDJSON reader on its own: every way Ollama's lines can arrive cut up.
 */
import { MAX_LINE_BYTES, ndjsonLines, OllamaStreamError } from '../lib/backends/ndjson';

async function* chunks(...parts: Array<string | Buffer>): AsyncGenerator<Buffer> {
  for (const part of parts) yield Buffer.isBuffer(part) ? part : Buffer.from(part);
}

async function collect(source: AsyncIterable<Uint8Array>): Promise<unknown[]> {
  const out: unknown[] = [];
  for await (const line of ndjsonLines<object>(source)) out.push(line);
  return out;
}

describe('ndjsonLines', () => {
  test('lines split anywhere, several lines per read, blank lines, and a last line without its newline', async () => {
    const lines = await collect(chunks('{"a":', '1}\n{"b":2}\n\n{"c"', ':3}\r\n', '{"done":true}'));
    expect(lines).toEqual([{ a: 1 }, { b: 2 }, { c: 3 }, { done: true }]);
  });

  test('a multi-byte character split between two reads is decoded whole', async () => {
    const bytes = Buffer.from('{"t":"né 🦙"}\n');
    const cut = bytes.indexOf(0xf0) + 2; // inside the llama's four bytes
    const lines = await collect(chunks(bytes.subarray(0, 9), bytes.subarray(9, cut), bytes.subarray(cut)));
    expect(lines).toEqual([{ t: 'né 🦙' }]);
  });

  test('an {"error"} line ends the stream with that message', async () => {
    const iterator = ndjsonLines<object>(chunks('{"a":1}\n{"error":"model runner has unexpectedly stopped"}\n{"b":2}\n'));
    expect(await iterator.next()).toEqual({ done: false, value: { a: 1 } });
    const failure = iterator.next();
    await expect(failure).rejects.toBeInstanceOf(OllamaStreamError);
    await expect(failure).rejects.toThrow('model runner has unexpectedly stopped');
  });

  test('garbage and non-object lines are errors, not silently skipped', async () => {
    await expect(collect(chunks('<html>busy</html>\n'))).rejects.toBeInstanceOf(SyntaxError);
    await expect(collect(chunks('[1,2]\n'))).rejects.toThrow('not a JSON object');
  });

  test('a stream that never ends its line is cut once the line passes the bound', async () => {
    const piece = Buffer.alloc(1024 * 1024, 0x61); // 1 MiB of "a", no newline
    async function* endless(): AsyncGenerator<Buffer> {
      for (let i = 0; i <= MAX_LINE_BYTES / piece.length; i++) yield piece;
      yield Buffer.from('\n');
    }
    await expect(collect(endless())).rejects.toThrow('longer than');
  });
});
