/**
 * The handler that reads Ollama's streamed answer, driven the way undici drives it (its dispatch
 * handler callbacks), with a controller that records what the handler asked of the connection.
 * The HTTP behaviour end to end is covered by the route tests against the Ollama double.
 */
import type { Dispatcher } from 'undici';
import { AnswerStream } from '../lib/backends/answer-stream';
import { OllamaResponseError } from '../lib/backends/failures';
import { OllamaStreamError } from '../lib/backends/ndjson';

class RecordingController {
  paused = false;
  aborted = false;
  reason: Error | null = null;
  pauses = 0;
  resumes = 0;
  readonly rawHeaders = null;
  readonly rawTrailers = null;
  pause(): void {
    this.paused = true;
    this.pauses++;
  }
  resume(): void {
    this.paused = false;
    this.resumes++;
  }
  abort(reason: Error): void {
    this.aborted = true;
    this.reason = reason;
  }
}

interface Line {
  n?: number;
  done?: boolean;
}

function setUp(signal = new AbortController().signal) {
  const midStream = jest.fn((err: unknown) => Object.assign(new Error('mid-stream'), { cause: err }));
  const answer = new AnswerStream<Line>({ convert: (line) => line as Line, isLast: (line) => line.done === true, signal, midStream });
  const controller = new RecordingController();
  const c = controller as unknown as Dispatcher.DispatchController;
  const start = (status = 200) => {
    answer.onRequestStart(c);
    answer.onResponseStart(c, status);
  };
  const data = (text: string) => answer.onResponseData(c, Buffer.from(text));
  return { answer, controller, c, start, data, midStream };
}

describe('AnswerStream', () => {
  test('ready() waits for the first line; next() takes everything read since the last call as one batch', async () => {
    const { answer, start, data } = setUp();
    let ready = false;
    const readiness = answer.ready().then(() => (ready = true));
    start();
    await Promise.resolve();
    expect(ready).toBe(false); // headers alone are not the first line
    data('{"n":1}\n{"n":');
    await readiness;
    data('2}\n');
    data('{"n":3}\n');
    expect(await answer.next()).toEqual({ done: false, value: [{ n: 1 }, { n: 2 }, { n: 3 }] });
    const pending = answer.next();
    data('{"done":true}\n');
    expect(await pending).toEqual({ done: false, value: [{ done: true }] });
    answer.onResponseEnd();
    expect(await answer.next()).toEqual({ done: true, value: undefined });
  });

  test('the reads parsed in one go are one batch; a consumer that falls 64 KiB behind pauses the socket', async () => {
    const { answer, controller, start, data } = setUp();
    start();
    const line = (n: number) => `{"n":${n},"pad":"${'x'.repeat(1000)}"}\n`;
    const pending = answer.next();
    for (let i = 0; i < 3; i++) data(line(i)); // one socket read, three HTTP chunks
    expect((await pending).value).toHaveLength(3);
    for (let i = 0; i < 64; i++) data(line(i));
    expect(controller.pauses).toBe(0);
    data(line(64));
    expect(controller.paused).toBe(true);
    const batch = await answer.next();
    expect(batch.value).toHaveLength(65);
    expect(controller.paused).toBe(false);
    expect(controller.resumes).toBe(1);
  });

  test('lines before an error line are delivered first, then the failure (mapped), and the request is closed', async () => {
    const { answer, controller, start, data, midStream } = setUp();
    start();
    data('{"n":1}\n{"error":"model runner has unexpectedly stopped"}\n');
    expect(controller.aborted).toBe(true);
    await answer.ready();
    expect((await answer.next()).value).toEqual([{ n: 1 }]);
    await expect(answer.next()).rejects.toThrow('mid-stream');
    expect(midStream.mock.calls[0]?.[0]).toBeInstanceOf(OllamaStreamError);
  });

  test('an error before the first line rejects ready() with the raw failure', async () => {
    const { answer, start, data } = setUp();
    start();
    data('{"error":"unexpected tool call"}\n');
    await expect(answer.ready()).rejects.toBeInstanceOf(OllamaStreamError);
  });

  test('a non-2xx answer fails with its status and Ollama\'s message', async () => {
    const { answer, start, data } = setUp();
    start(404);
    data('{"error":"model \'nope\' not found"}');
    answer.onResponseEnd();
    const failure = answer.ready();
    await expect(failure).rejects.toBeInstanceOf(OllamaResponseError);
    await expect(failure).rejects.toMatchObject({ status_code: 404, error: "model 'nope' not found" });
  });

  test('a connection that dies: the waiting consumer gets the mapped failure', async () => {
    const { answer, c, start, data } = setUp();
    start();
    data('{"n":1}\n');
    await answer.ready();
    await answer.next();
    const waiting = answer.next();
    answer.onResponseError(c, Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' }));
    await expect(waiting).rejects.toThrow('mid-stream');
  });

  test('the caller leaving closes the request at once, even before it reached a socket', async () => {
    const left = new AbortController();
    const { answer, controller, c } = setUp(left.signal);
    const readiness = answer.ready();
    left.abort();
    await expect(readiness).rejects.toMatchObject({ name: 'AbortError' });
    answer.onRequestStart(c); // undici puts it on a socket only now
    expect(controller.aborted).toBe(true);
  });

  test('stopping early closes the request; stopping after the final line keeps the connection', async () => {
    const early = setUp();
    early.start();
    early.data('{"n":1}\n');
    for await (const batch of early.answer) {
      expect(batch).toEqual([{ n: 1 }]);
      break;
    }
    expect(early.controller.aborted).toBe(true);

    const late = setUp();
    late.start();
    late.data('{"n":1}\n{"done":true}\n'); // the end of the chunked body has not been read yet
    for await (const batch of late.answer) if (batch.some((line) => line.done)) break;
    expect(late.controller.aborted).toBe(false);
  });

  test('a caller that leaves with the final line read but a paused socket: undici may read the end', async () => {
    const left = new AbortController();
    const { answer, controller, start, data } = setUp(left.signal);
    start();
    for (let i = 0; i < 64; i++) data(`{"n":${i},"pad":"${'x'.repeat(1000)}"}\n`);
    data(`{"done":true,"pad":"${'x'.repeat(1000)}"}\n`); // the read that crosses 64 KiB
    expect(controller.paused).toBe(true);
    left.abort();
    expect(controller.aborted).toBe(false); // the answer is whole: the connection is worth keeping
    expect(controller.paused).toBe(false); // and it is not left paused, which would hold it forever
    await answer.ready();
  });

  test('a line longer than the read-ahead is read to its end, not paused with nothing to take', async () => {
    const { answer, controller, start, data } = setUp();
    start();
    const long = `{"n":1,"context":[${Array.from({ length: 20_000 }, (_, i) => i).join(',')}]}\n`; // ~110 KB
    const pending = answer.next();
    for (let at = 0; at < long.length - 16_384; at += 16_384) data(long.slice(at, at + 16_384));
    // Over 64 KiB read and no line yet: nothing for the consumer to take, so nothing may pause.
    expect(controller.paused).toBe(false);
    data(long.slice(Math.floor((long.length - 1) / 16_384) * 16_384));
    expect((await pending).value).toEqual([expect.objectContaining({ n: 1 })]);
    expect(controller.paused).toBe(false);
  });

  test('a body that ends without a line is a failure before the first token, not an answer', async () => {
    const { answer, start } = setUp();
    const readiness = answer.ready();
    start();
    answer.onResponseEnd();
    await expect(readiness).rejects.toThrow(/empty body/);
  });

  test('bytes after the final line are not queued nor held back, and past a read\'s worth the connection is closed', async () => {
    const { answer, controller, start, data } = setUp();
    start();
    data('{"n":1}\n{"done":true}\n{"n":2}\n');
    expect((await answer.next()).value).toEqual([{ n: 1 }, { done: true }]); // not what came after
    const filler = `{"pad":"${'x'.repeat(1000)}"}\n`;
    for (let i = 0; i < 60; i++) data(filler);
    expect(controller.pauses).toBe(0);
    expect(controller.aborted).toBe(false); // a little is tolerated: the connection is worth keeping
    for (let i = 0; i < 10; i++) data(filler);
    expect(controller.aborted).toBe(true);
    expect(controller.reason?.message).toMatch(/after its final line/);
  });
});
