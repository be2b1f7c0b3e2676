/**
 * Text built a token at a time, kept flat. `s += token` makes V8 a rope: a 32-byte node for every
 * append, over the token's own string, until something reads the characters. And a token of 13
 * characters or more, cut from Ollama's line by the line parser, is a V8 "sliced string": a view
 * that keeps the whole line (~150 bytes) alive. An answer's text is held while it is generated (for
 * the final reply, or for counting what was relayed if Ollama gives no count), for every stream in
 * flight, and young-generation collections copy what it holds over and over, then promote it.
 *
 * So the last few pieces are kept apart and joined every `JOIN_EVERY` appends, or as soon as there are
 * two when one may be a slice: the join copies their characters into one new string, which lets the
 * lines go (a slice lives one token, not the ~450 ms between young collections that would promote
 * its line to the old generation). The joined chunks are appended to the text, and every
 * `FLATTEN_EVERY` appends a read of one character makes V8 flatten the text into one string
 * (String::Flatten); the copies cost O(n) each, a few per kilobyte appended.
 * Measured by `npm run bench:text` (bench/README.md, eighth and ninth sessions).
 */
const JOIN_EVERY = 16;
const FLATTEN_EVERY = 256;
/** V8 makes a substring of this length or more a slice of its parent (SlicedString::kMinLength). */
const SLICE_MIN_LENGTH = 13;

export class FlatText {
  private text = '';
  private readonly recent: string[] = [];
  private mayHoldSlice = false;
  private appends = 0;

  add(piece: string): void {
    if (piece === '') return;
    this.recent.push(piece);
    if (piece.length >= SLICE_MIN_LENGTH) this.mayHoldSlice = true;
    // A join of one piece gives that same string back, slice and all: a slice waits for one more.
    if (this.recent.length < JOIN_EVERY && !(this.mayHoldSlice && this.recent.length >= 2)) return;
    const joined = this.recent.length;
    this.text += this.recent.join('');
    this.recent.length = 0;
    this.mayHoldSlice = false;
    // The read is what flattens; its result is not needed.
    if (Math.floor((this.appends + joined) / FLATTEN_EVERY) > Math.floor(this.appends / FLATTEN_EVERY)) this.text.charCodeAt(0);
    this.appends += joined;
  }

  get value(): string {
    return this.recent.length === 0 ? this.text : this.text + this.recent.join('');
  }
}
