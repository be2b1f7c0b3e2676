/**
 * lib/flat-text.ts holds an answer's text as it grows; what it gives back must be exactly the
 * concatenation, whatever the pieces (empty, non-ASCII, surrogate pairs split across pieces).
 */
import { FlatText } from '../lib/flat-text';

const ALPHABET = ['a', ' ', 'é', '字', '😀', '\n', '"', '\u0000', 'token'];

function randomPiece(random: () => number): string {
  const length = Math.floor(random() * 6);
  let piece = '';
  for (let i = 0; i < length; i++) piece += ALPHABET[Math.floor(random() * ALPHABET.length)];
  return piece;
}

/** A small deterministic generator, so a failure can be replayed. */
function seeded(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

test('gives back exactly the concatenation of its pieces, across many flattenings', () => {
  for (const [seed, count] of [
    [1, 0],
    [2, 1],
    [7, 15],
    [8, 16],
    [9, 17],
    [3, 255],
    [4, 256],
    [5, 257],
    [6, 5000],
  ] as const) {
    const random = seeded(seed);
    const text = new FlatText();
    let expected = '';
    for (let i = 0; i < count; i++) {
      const piece = randomPiece(random);
      text.add(piece);
      expected += piece;
      if (i % 997 === 0) expect(text.value).toBe(expected); // read mid-way too: reading changes nothing
    }
    expect(text.value).toBe(expected);
    expect(text.value.length).toBe(expected.length);
  }
});

test('half of a surrogate pair in one piece and half in the next stays one character', () => {
  const text = new FlatText();
  const emoji = '😀';
  for (let i = 0; i < 600; i++) {
    text.add(emoji[0] as string);
    text.add(emoji[1] as string);
  }
  expect(text.value).toBe(emoji.repeat(600));
  expect([...text.value]).toHaveLength(600);
});

test('pieces long enough to be slices of their lines come back exactly, in any mix with short ones', () => {
  const random = seeded(11);
  const text = new FlatText();
  let expected = '';
  for (let i = 0; i < 3000; i++) {
    // A slice, as the line parser cuts a token of 13 characters or more from its line.
    const line = `{"content":"${'x'.repeat(Math.floor(random() * 30))}${i}é"}`;
    const piece = random() < 0.5 ? line.slice(12, -2) : randomPiece(random);
    text.add(piece);
    expected += piece;
    if (i % 499 === 0) expect(text.value).toBe(expected);
  }
  expect(text.value).toBe(expected);
});
