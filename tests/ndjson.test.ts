/**
 * The NDJSON reader on its own: every way Ollama's lines can arrive cut up.
 */
import { MAX_LINE_BYTES, NdjsonSplitter, OllamaStreamError } from '../lib/backends/ndjson';

/** Feeds the reads one by one, then the end, as the HTTP client does. */
function split(...parts: Array<string | Buffer>): object[] {
  const splitter = new NdjsonSplitter();
  const out: object[] = [];
  for (const part of parts) splitter.push(Buffer.isBuffer(part) ? part : Buffer.from(part), out);
  splitter.end(out);
  return out;
}

describe('NdjsonSplitter', () => {
  test('lines split anywhere, several lines per read, blank lines, and a last line without its newline', () => {
    expect(split('{"a":', '1}\n{"b":2}\n\n{"c"', ':3}\r\n', '{"done":true}')).toEqual([{ a: 1 }, { b: 2 }, { c: 3 }, { done: true }]);
  });

  test('each read yields exactly the lines it completes', () => {
    const splitter = new NdjsonSplitter();
    const first: object[] = [];
    splitter.push(Buffer.from('{"a":1}\n{"b":'), first);
    expect(first).toEqual([{ a: 1 }]);
    const second: object[] = [];
    splitter.push(Buffer.from('2}\n'), second);
    expect(second).toEqual([{ b: 2 }]);
  });

  test('a multi-byte character split between two reads is decoded whole', () => {
    const bytes = Buffer.from('{"t":"né 🦙"}\n');
    const cut = bytes.indexOf(0xf0) + 2; // inside the llama's four bytes
    expect(split(bytes.subarray(0, 9), bytes.subarray(9, cut), bytes.subarray(cut))).toEqual([{ t: 'né 🦙' }]);
  });

  test('an unfinished line survives its read buffer being reused', () => {
    const splitter = new NdjsonSplitter();
    const out: object[] = [];
    const read = Buffer.from('{"a":"xy');
    splitter.push(read, out);
    read.fill(0x20); // the socket's buffer, overwritten by the next read
    splitter.push(Buffer.from('z"}\n'), out);
    expect(out).toEqual([{ a: 'xyz' }]);
  });

  test('an {"error"} line throws with that message after the lines before it', () => {
    const splitter = new NdjsonSplitter();
    const out: object[] = [];
    const push = () => splitter.push(Buffer.from('{"a":1}\n{"error":"model runner has unexpectedly stopped"}\n{"b":2}\n'), out);
    expect(push).toThrow(OllamaStreamError);
    expect(out).toEqual([{ a: 1 }]);
    expect(() => new NdjsonSplitter().push(Buffer.from('{"error":"boom"}\n'), [])).toThrow('boom');
  });

  test('garbage and non-object lines are errors, not silently skipped', () => {
    expect(() => split('<html>busy</html>\n')).toThrow(SyntaxError);
    expect(() => split('[1,2]\n')).toThrow('not a JSON object');
    expect(() => split('{"a":1}\n<html>')).toThrow(SyntaxError); // the unfinished last line too
  });

  test('a stream that never ends its line is cut once the line passes the bound', () => {
    const piece = Buffer.alloc(1024 * 1024, 0x61); // 1 MiB of "a", no newline
    const splitter = new NdjsonSplitter();
    const push = () => {
      for (let i = 0; i <= MAX_LINE_BYTES / piece.length; i++) splitter.push(piece, []);
    };
    expect(push).toThrow('longer than');
  });
});
