/**
 * Starts the HTTP server on a host and port (0 picks a free one) and closes it gracefully:
 * stop accepting, let running requests (streams included) finish within a grace period, then cut
 * what is left — a cut client aborts its Ollama request and is billed for what it was sent.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';
import { createExpressServer } from './express-server';

export interface RunningServer {
  server: http.Server;
  url: string;
  /**
   * Resolves once every connection is closed (at once when idle, at the latest after `graceMs`) and
   * every reply has been observed (logged, counted).
   */
  close(graceMs?: number): Promise<void>;
}

export async function listen(app: Express, host: string, port: number): Promise<RunningServer> {
  const server = createExpressServer(app);
  // Long generations: Node's default 5-minute request timeout would cut a healthy slow answer.
  server.requestTimeout = 0;
  server.keepAliveTimeout = 65_000;
  const running = new Set<http.ServerResponse>();
  let draining = false;
  server.on('request', (_req: http.IncomingMessage, res: http.ServerResponse) => {
    running.add(res);
    if (draining) res.shouldKeepAlive = false;
    res.once('close', () => {
      running.delete(res);
      // A keep-alive connection whose last reply just ended would otherwise hold close() open.
      if (draining) server.closeIdleConnections();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    server,
    url: `http://${shownHost}:${address.port}`,
    close: (graceMs = 30_000) => {
      draining = true;
      // Replies not yet begun say `Connection: close`, so clients do not send another request here.
      for (const res of running) if (!res.headersSent) res.shouldKeepAlive = false;
      // Then every reply's 'close' (a cut one's comes after the server's own) and one check phase,
      // where server/edge.ts runs the reply observers: main.ts finishes the log and exits right after.
      return closeGracefully(server, graceMs)
        .then(() => everyReplyClosed(running))
        .then(() => new Promise<void>((resolve) => setImmediate(resolve)));
    },
  };
}

/** How long close() waits for the replies' own 'close' once the server is closed: a backstop only. */
const REPLIES_CLOSED_WAIT_MS = 1_000;

function everyReplyClosed(running: Set<http.ServerResponse>): Promise<void> {
  // A reply never given a socket (a pipelined request queued behind one still running, on a connection
  // now gone) never emits 'close'; nobody observed it before either (a review found close() waiting
  // for it for ever).
  for (const res of running) if (res.socket === null) running.delete(res);
  if (running.size === 0) return Promise.resolve();
  return new Promise((resolve) => {
    // Should any other reply miss its 'close', shutdown still goes on.
    const backstop = setTimeout(resolve, REPLIES_CLOSED_WAIT_MS);
    backstop.unref();
    for (const res of running) {
      res.once('close', () => {
        if (running.size > 0) return;
        clearTimeout(backstop);
        resolve();
      });
    }
  });
}

function closeGracefully(server: http.Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => server.closeAllConnections(), graceMs);
    timer.unref();
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    // Idle keep-alive sockets would hold close() open for nothing.
    server.closeIdleConnections();
  });
}
