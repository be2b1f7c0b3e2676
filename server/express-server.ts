/**
 * The HTTP server for an Express app, with requests and responses born with the app's prototypes.
 *
 * On every request Express's `app.handle()` changes the prototype of Node's request and response
 * objects to `app.request` and `app.response`. Changing the prototype of a live object is one of the
 * costliest things to do to V8: the objects leave their hidden classes, and Node's own HTTP code that
 * then touches them runs on slow paths. Measured with `npm run bench:floor`, that one step took a
 * plain `node:http` server from 0.39 to 0.76 ms of CPU per request and from 1.14 to 0.86 × the proxy's
 * throughput. Node lets a server choose the classes it builds requests and responses from; built
 * from these, each object already has the prototype Express sets, so Express's call changes nothing.
 */
import http from 'node:http';
import type { Socket } from 'node:net';
import type { Express } from 'express';

/** What Node calls with `new` to build each request and response. */
type Constructor<T, A extends unknown[]> = new (...args: A) => T;

export function createExpressServer(app: Express): http.Server {
  // Node's IncomingMessage and ServerResponse are plain constructor functions (not classes), so a
  // function constructor can run them on `this` and take the app's object as its prototype.
  // Reflect.apply bridges their class-typed declarations to that call. (Reflect.construct with the
  // app's constructor as new.target would survive Node turning them into classes, but measured much
  // slower: 741–948 against 1,097–1,155 req/s. If Node ever does, every test fails at once.)
  function AppRequest(this: http.IncomingMessage, socket: Socket): void {
    Reflect.apply(http.IncomingMessage, this, [socket]);
  }
  AppRequest.prototype = app.request;
  function AppResponse(this: http.ServerResponse, req: http.IncomingMessage, options?: unknown): void {
    Reflect.apply(http.ServerResponse, this, [req, options]);
  }
  AppResponse.prototype = app.response;
  return http.createServer(
    {
      IncomingMessage: AppRequest as unknown as Constructor<http.IncomingMessage, [Socket]> as typeof http.IncomingMessage,
      ServerResponse: AppResponse as unknown as Constructor<http.ServerResponse, [http.IncomingMessage]> as typeof http.ServerResponse,
    },
    app,
  );
}
