/**
 * Runs the Ollama test double in its own process for benchmarks, so it does not share an event loop
 * with the load generator. `node dist/bench/double-process.js <tokenDelayMs> <tokens> [stamp]`; prints
 * its URL. With `stamp`, each token's text is the time it was written (the double's `stampTokens`).
 */
import { startOllamaDouble } from '../tests/support/ollama-double';

async function main(): Promise<void> {
  const tokenDelayMs = Number(process.argv[2] ?? 0);
  const tokenCount = Number(process.argv[3] ?? 20);
  const double = await startOllamaDouble({ tokenDelayMs, record: false, stampTokens: process.argv[4] === 'stamp' });
  const tokens = Array.from({ length: tokenCount }, (_, i) => ` tok${i}`);
  double.behaviour = () => ({ kind: 'reply', tokens });
  console.log(double.url);
}

void main();
