/**
 * Relays the core's event stream as SSE, for both OpenAI generation endpoints. The headers go out
 * only after the core admitted the request (the caller opened it), so refusals were real statuses;
 * from here on a failure is written as `data: {"error": …}` and `data: [DONE]` — never a clean end
 * that would pass a truncated answer off as complete.
 */
import type { Response } from 'express';
import { GatewayError, toGatewayError } from '../../../lib/errors';
import type { ChatEvent } from '../../../lib/types';
import { SseWriter } from '../../sse';

export interface StreamRenderer {
  /** Chunks to send before the first event (e.g. the role delta). */
  start(): unknown[];
  delta(event: Extract<ChatEvent, { type: 'delta' }>): unknown[];
  /** The finish chunk, and the usage chunk when asked for. */
  done(event: Extract<ChatEvent, { type: 'done' }>): unknown[];
}

export async function relayAsSse(
  res: Response,
  events: AsyncGenerator<ChatEvent, void, undefined>,
  signal: AbortSignal,
  render: StreamRenderer,
  keepAliveMs?: number,
): Promise<void> {
  const sse = new SseWriter(res, keepAliveMs);
  sse.open();
  for (const chunk of render.start()) sse.data(chunk);
  try {
    for await (const event of events) {
      // The client left: stop reading, which makes the core abort Ollama and bill what was relayed.
      if (signal.aborted) break;
      const chunks = event.type === 'delta' ? render.delta(event) : render.done(event);
      for (const chunk of chunks) sse.data(chunk);
      if (event.type === 'done') return void sse.done();
    }
    if (signal.aborted) return void sse.end();
    throw new GatewayError('backend_error', 'Ollama ended the answer without a final line.');
  } catch (err) {
    if (signal.aborted) return void sse.end();
    sse.data({ error: { message: toGatewayError(err).message, type: 'server_error', param: null, code: null } });
    sse.done();
  } finally {
    sse.stop();
  }
}
