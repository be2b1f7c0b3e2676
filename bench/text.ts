/**
 * `npm run bench:text`: what an answer's text costs to hold while it is generated, built a token at a
 * time with `+=` (a V8 rope) and with lib/flat-text.ts. Every stream in flight holds one or two.
 * Two cases: a long answer's finished text, and a short answer in flight whose tokens were cut from
 * Ollama's lines (a piece of 13 characters or more is then a view that keeps its line alive).
 * Options (environment): TEXT_TOKENS (tokens a text, default 20000), TEXT_COPIES (texts held, default 50),
 * TEXT_IN_FLIGHT (tokens of the short answer, default 50).
 */
import { FlatText } from '../lib/flat-text';

const TOKENS = Number(process.env.TEXT_TOKENS ?? 20_000);
const COPIES = Number(process.env.TEXT_COPIES ?? 50);
// Token-sized pieces, as Ollama sends them (a leading space and a short word).
const pieces = Array.from({ length: 1000 }, (_, i) => ` w${i % 97}`);

const collectGarbage = (globalThis as { gc?: () => void }).gc;
if (!collectGarbage) throw new Error('run with node --expose-gc (npm run bench:text does)');
const heapUsed = () => {
  collectGarbage();
  return process.memoryUsage().heapUsed;
};

function held(build: () => unknown): { kbEach: number } {
  const before = heapUsed();
  const texts = Array.from({ length: COPIES }, build);
  const kbEach = (heapUsed() - before) / COPIES / 1024;
  texts.length = 0;
  return { kbEach };
}

const rope = held(() => {
  let text = '';
  for (let i = 0; i < TOKENS; i++) text += pieces[i % pieces.length];
  return text;
});
const flat = held(() => {
  const text = new FlatText();
  for (let i = 0; i < TOKENS; i++) text.add(pieces[i % pieces.length] as string);
  return text.value;
});
const chars = pieces.reduce((sum, piece, i) => sum + (i < TOKENS ? piece.length : 0), 0) * Math.ceil(TOKENS / pieces.length);
console.log(`a finished text of ${TOKENS} tokens (~${chars} characters) held: += ${rope.kbEach.toFixed(1)} KB, FlatText ${flat.kbEach.toFixed(1)} KB`);

// A short answer in flight: each token cut from its own NDJSON line, as lib/backends/token-line.ts does.
const IN_FLIGHT = Number(process.env.TEXT_IN_FLIGHT ?? 50);
const lineOf = (i: number) =>
  `{"model":"llama3.2","created_at":"2026-11-24T04:18:45.${String(i).padStart(6, '0')}Z","message":{"role":"assistant","content":" token-number-${i}"},"done":false}`;
const cutFromLine = (i: number) => {
  const line = lineOf(i);
  const start = line.indexOf('"content":"') + 11;
  return line.slice(start, line.indexOf('"', start));
};
const ropeInFlight = held(() => {
  let text = '';
  for (let i = 0; i < IN_FLIGHT; i++) text += cutFromLine(i);
  return { text };
});
const flatInFlight = held(() => {
  const text = new FlatText();
  for (let i = 0; i < IN_FLIGHT; i++) text.add(cutFromLine(i));
  return text;
});
console.log(
  `an answer in flight after ${IN_FLIGHT} tokens cut from lines, held: += ${ropeInFlight.kbEach.toFixed(1)} KB, FlatText ${flatInFlight.kbEach.toFixed(1)} KB`,
);
