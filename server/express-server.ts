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
 *
 * They are subclasses of Node's, made the app's prototypes: `app.request` becomes the subclass's
 * prototype, which inherits from what `app.request` was (Express's methods, `req.app`), which
 * inherits from Node's. A subclass, rather than a function calling Node's constructor on `this`,
 * because V8 sizes an object's in-object property space from its constructor: a function with no
 * `this.x =` of its own got almost none, so a response overflowed into a dictionary (a hash table)
 * within Node's own constructor and a request within Express's first touch, and every property
 * access on them was a hash lookup (bench/README.md, eighth session). A subclass is sized from
 * Node's constructor, as `new ServerResponse()` is. tests/express-server.test.ts checks both.
 */
import http from 'node:http';
import type { Express } from 'express';

export function createExpressServer(app: Express): http.Server {
  class AppRequest extends http.IncomingMessage {}
  Object.setPrototypeOf(AppRequest.prototype, app.request);
  app.request = AppRequest.prototype as Express['request'];

  // Generic as Node's is, so the server's type stays `http.Server`.
  class AppResponse<Request extends http.IncomingMessage = http.IncomingMessage> extends http.ServerResponse<Request> {
    /**
     * Express makes `res.locals` with `Object.create(null)`, an object V8 keeps as a dictionary; the
     * gateway writes a request's context there on every request (server/context.ts). Set here, a
     * plain object, Express keeps it.
     */
    locals: Record<string, unknown> = {};
  }
  Object.setPrototypeOf(AppResponse.prototype, app.response);
  app.response = AppResponse.prototype as unknown as Express['response'];

  return http.createServer({ IncomingMessage: AppRequest, ServerResponse: AppResponse }, app);
}
