/**
 * zod failures → a 400 `invalid_request_error` naming the field as OpenAI does (`messages[0].content`).
 */
import type { z } from 'zod';
import { GatewayError } from '../../../lib/errors';

export function paramOf(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out === '' ? String(key) : `.${String(key)}`;
  }
  return out;
}

/** Parses `body` or throws a GatewayError for the first issue. */
export function parseOrThrow<T extends z.ZodType>(schema: T, body: unknown, at = ''): z.infer<T> {
  const result = schema.safeParse(body);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const param = at + (issue ? paramOf(issue.path).replace(/^(?=[a-z_])/i, at ? '.' : '') : '');
  if (param === '') throw new GatewayError('invalid_request', `Invalid request body: ${issue?.message ?? 'expected a JSON object'}.`);
  throw new GatewayError('invalid_request', `Invalid value for '${param}': ${issue?.message ?? 'invalid'}.`, { param });
}

/** A 400 for a field the caller set to something the gateway cannot honour. */
export function badParam(param: string, message: string): GatewayError {
  return new GatewayError('invalid_request', message, { param });
}

/** OpenAI's `stop`: a string or an array of strings, normalised to the array Ollama takes. */
export function stopList(stop: string | string[] | null | undefined): string[] | undefined {
  if (stop === null || stop === undefined) return undefined;
  return typeof stop === 'string' ? [stop] : stop;
}
