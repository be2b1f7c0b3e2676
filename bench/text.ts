/**
 * `npm run bench:text`: what an answer's text costs to hold while it is generated, built a token at a
 * time with `+=` (a V8 rope) and with lib/flat-text.ts. Every stream in flight holds one or two.
 * Options (environment): TEXT_TOKENS (tokens a text, default 20000), TEXT_COPIES (texts held, default 50).
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

function held(build: () => string): { kbEach: number; chars: number } {
  const before = heapUsed();
  const texts = Array.from({ length: COPIES }, build);
  const kbEach = (heapUsed() - before) / COPIES / 1024;
  return { kbEach, chars: texts[0]?.length ?? 0 };
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
console.log(`a text of ${TOKENS} tokens (${rope.chars} characters) held: += ${rope.kbEach.toFixed(1)} KB, FlatText ${flat.kbEach.toFixed(1)} KB`);
