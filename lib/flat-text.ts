/**
 * Text built a token at a time, kept flat. `s += token` makes V8 a rope: a 32-byte node for every
 * append, over the token's own string, until something reads the characters. An answer's text is
 * held while it is generated (for the final reply, or for counting what was relayed if Ollama gives
 * no count), so a long answer held ~8 times its size: 624 KB for 20,000 tokens of 78 KB
 * (bench/README.md, eighth session), for every stream in flight, and young-generation collections
 * copy it over and over. Reading one character every so often makes V8 flatten the rope into one
 * string; the copies cost O(n) each, a few per kilobyte appended.
 */
const FLATTEN_EVERY = 256;

export class FlatText {
  private text = '';
  private appends = 0;

  add(piece: string): void {
    if (piece === '') return;
    this.text += piece;
    // The read is what flattens (V8's String::Flatten); its result is not needed.
    if (++this.appends % FLATTEN_EVERY === 0) this.text.charCodeAt(0);
  }

  get value(): string {
    return this.text;
  }
}
