/** OpenAI-looking ids: `chatcmpl-` / `cmpl-` followed by 29 alphanumerics, as on OpenAI's wire. */
import { randomInt } from 'node:crypto';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

export function openaiId(prefix: string, length = 29): string {
  let out = prefix;
  for (let i = 0; i < length; i++) out += ALPHABET[randomInt(ALPHABET.length)];
  return out;
}

/** Deprecated by OpenAI but still read by some clients; constant because the backend is always Ollama. */
export const SYSTEM_FINGERPRINT = 'fp_ollama';

export const unixSeconds = (): number => Math.floor(Date.now() / 1000);
