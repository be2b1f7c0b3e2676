/**
 * Configuration from the environment, parsed and validated once at start-up. A bad value stops the
 * process with a message that names the variable.
 */
import { z } from 'zod';

const integer = (fallback: number, min = 0) => z.coerce.number().int().min(min).default(fallback);

/** Node's (and undici's) timers fire at once, not never, for a delay past 2^31 − 1 ms (~24.8 days). */
const MAX_TIMER_MS = 2_147_483_647;
/** Milliseconds for a timer. */
const duration = (fallback: number, min = 0) => z.coerce.number().int().min(min).max(MAX_TIMER_MS).default(fallback);

/** `OLLAMA_HOST` as Ollama reads it: `host`, `host:port`, `:port` or a URL; several separated by commas. */
function normaliseOllamaHost(value: string): string {
  let host = value.trim();
  if (host.startsWith(':')) host = `127.0.0.1${host}`;
  if (!/^https?:\/\//.test(host)) host = `http://${host}`;
  const url = new URL(host);
  if (!url.port && !/^https?:\/\//.test(value.trim())) url.port = '11434';
  return url.toString().replace(/\/+$/, '');
}

const ollamaHosts = z
  .string()
  .default('http://127.0.0.1:11434')
  .transform((value, ctx) => {
    const parts = value.split(',').map((p) => p.trim()).filter(Boolean);
    if (parts.length === 0) {
      ctx.addIssue({ code: 'custom', message: 'needs at least one host' });
      return z.NEVER;
    }
    try {
      return parts.map(normaliseOllamaHost);
    } catch {
      ctx.addIssue({ code: 'custom', message: `not a host or URL: ${value}` });
      return z.NEVER;
    }
  });

export const configSchema = z.object({
  HOST: z.string().min(1).default('127.0.0.1'),
  PORT: integer(8080).pipe(z.number().max(65535)),
  OLLAMA_HOST: ollamaHosts,
  GATEWAY_DB: z.string().min(1).default('./data/gateway.db'),
  DEFAULT_MODEL: z.string().min(1).default('covalid-1.0'),
  /** The local guard model (an Ollama model or a model-table alias) behind /moderate and /v1/moderations. */
  MODERATION_MODEL: z.string().min(1).default('llama-guard3'),
  /** Largest request body, e.g. `1mb`, `512kb` (the body parser's syntax). */
  BODY_LIMIT: z
    .string()
    .regex(/^\d+(b|kb|mb)$/i, 'a size such as 1mb or 512kb')
    .default('1mb'),
  /** Output bound for credit reservations when neither request nor model sets one. */
  DEFAULT_MAX_OUTPUT_TOKENS: integer(4096, 1),
  /** What an image adds to the prompt estimate (reservations, tokens per minute). */
  IMAGE_TOKENS: integer(768, 0),
  OLLAMA_HEADERS_TIMEOUT_MS: duration(30 * 60_000),
  /** Streams: how long the headers wait for Ollama's first token before opening with keep-alives. */
  SSE_HEADER_GRACE_MS: duration(5_000),
  /** Streams: silence after which a `: keep-alive` comment is written (0 turns them off). */
  SSE_KEEP_ALIVE_MS: duration(10_000),
  /** Streams: how long a client may take nothing of what was sent before it counts as gone (0: never). */
  SSE_STALL_MS: duration(60_000),
  OLLAMA_BODY_TIMEOUT_MS: duration(10 * 60_000),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Requests in flight per Ollama host and model; set it like Ollama's OLLAMA_NUM_PARALLEL. */
  BACKEND_CONCURRENCY: integer(1, 1),
  /** Requests waiting in the gateway for a slot; past that, 503 with Retry-After. */
  QUEUE_LIMIT: integer(256),
  /** First cool-down of a failed Ollama host before a health probe (doubles per failed probe, up to 60 s). */
  BACKEND_COOLDOWN_MS: duration(5_000, 1),
  /** Background refresh of each host's model list (/api/tags); 0 turns it off. */
  MODEL_REFRESH_MS: duration(30_000),
  /** On SIGTERM/SIGINT, how long running requests may take to finish before they are cut. */
  SHUTDOWN_GRACE_MS: duration(30_000),
});

export type Config = z.infer<typeof configSchema>;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // Empty variables count as unset, as shells and compose files often leave them so.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = configSchema.safeParse(present);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(env)'}: ${issue.message}`);
  throw new ConfigError(`Invalid configuration:\n  ${problems.join('\n  ')}`);
}
