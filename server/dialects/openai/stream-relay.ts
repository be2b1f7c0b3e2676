/**
 * Relays the core's event stream as SSE, for the OpenAI-shaped generation endpoints.
 *
 * The headers wait for the core to open the request — auth, model, limits, credits, the queue and
 * Ollama's own refusals then become real HTTP statuses — but not forever: a model that takes longer
 * than `headerGraceMs` to load would otherwise hit the client's header timeout, so past that the
 * headers go out and keep-alive comments hold the connection. From the headers on, a failure is
 * written as `data: {"error": …}` and `data: [DONE]` — never a clean end that would pass a truncated
 * answer off as complete.
 */
import type { CancelSignal } from '../../../lib/abort';
import type { Response } from 'express';
import { GatewayError, toGatewayError } from '../../../lib/errors';
import { ENDED } from '../../../lib/batch-source';
import type { ChatEvents, ChatExecution } from '../../../lib/chat';
import type { ChatEvent } from '../../../lib/types';
import { SseWriter } from '../../sse';
import { closeIfUnread } from '../../unread-reply';
import { openaiErrorObject } from './errors';

export interface StreamRenderer {
  /** Chunks to send before the first event (e.g. the role delta). */
  start(): unknown[];
  delta(event: Extract<ChatEvent, { type: 'delta' }>): unknown[];
  /** The finish chunk, and the usage chunk when asked for. */
  done(event: Extract<ChatEvent, { type: 'done' }>): unknown[];
}

/** How long the headers wait for Ollama's first line before the stream opens with keep-alives. */
export const SSE_HEADER_GRACE_MS = 5_000;

/**
 * How long a client's backlog may stay full before the client counts as gone: its generation is then
 * stopped and billed as far as it was relayed. Meanwhile Ollama is held back, not the gateway's
 * memory. (A very slow reader of a very long answer can look stalled: see SseWriter.drained.)
 */
export const SSE_STALL_MS = 60_000;

export interface RelayOptions {
  keepAliveMs?: number;
  headerGraceMs?: number;
  stallMs?: number;
}

export async function relayAsSse(
  res: Response,
  opening: Promise<ChatExecution>,
  signal: CancelSignal,
  render: StreamRenderer,
  options: RelayOptions = {},
): Promise<void> {
  const sse = new SseWriter(res, options.keepAliveMs);
  let timer: NodeJS.Timeout | undefined;
  const grace = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), options.headerGraceMs ?? SSE_HEADER_GRACE_MS);
  });
  // Before the grace period ends a refusal rejects here and is rendered as a real status.
  const first = await Promise.race([opening, grace]).finally(() => clearTimeout(timer));
  sse.open();
  /** Frames that precede the first event (the role delta): sent with whatever is written first. */
  let preamble: unknown[] = render.start();
  if (first === 'late') {
    // A model still loading: headers and preamble now, then keep-alives until Ollama's first line.
    sse.send(preamble);
    preamble = [];
  }
  let events: ChatEvents | undefined;
  try {
    events = (first === 'late' ? await opening : first).events;
    await pump(events);
  } catch (err) {
    if (signal.aborted) return void sse.end();
    // The same error object a status reply would carry, so clients can tell a missing model from a crash.
    sse.send([...preamble, { error: openaiErrorObject(toGatewayError(err)) }], true);
  } finally {
    // Stopped before the final event (the client left or stalled): Ollama is stopped and what was
    // relayed billed. After it, this only returns Ollama's connection to the pool.
    events?.cancel();
    sse.stop();
  }

  /**
   * Writes each batch as it becomes readable, in the callback that brings it: no promise per batch for
   * a client that keeps up. Settles once the final event is written, or the client is gone.
   */
  function pump(source: ChatEvents): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const writeWhatIsThere = (): void => {
        try {
          for (;;) {
            // The client left: stop reading, which makes the core abort Ollama and bill what was relayed.
            if (signal.aborted) return resolve(void sse.end());
            const batch = source.read();
            if (batch === null) return source.whenReadable(writeWhatIsThere);
            if (batch === ENDED) throw new GatewayError('backend_error', 'Ollama ended the answer without a final line.');
            // What arrived from Ollama together goes out together: one write per batch, the last one ending
            // the response too (when it is also the first, headers, answer and end are a single packet).
            const frames = preamble;
            preamble = [];
            let finished = false;
            for (const event of batch) {
              if (event.type === 'delta') frames.push(...render.delta(event));
              else {
                frames.push(...render.done(event));
                finished = true;
              }
            }
            sse.send(frames, finished);
            if (finished) {
              // The end is written, though perhaps not taken: a client that stopped reading just now
              // must not hold its connection open for ever.
              closeIfUnread(res, options.stallMs ?? SSE_STALL_MS);
              return resolve();
            }
            if (sse.backlogged) {
              sse.drained(options.stallMs ?? SSE_STALL_MS).then((keptUp) => {
                if (keptUp) return writeWhatIsThere();
                // Given up: as for a client that left, Ollama is stopped (finally above) and what was relayed billed.
                res.destroy();
                resolve();
              }, reject);
              return;
            }
          }
        } catch (err) {
          reject(err);
        }
      };
      writeWhatIsThere();
    });
  }
}
