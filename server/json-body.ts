/**
 * Reads a request's JSON body. It takes the place of `express.json()`, which measured about 0.1 ms of
 * CPU per request here (raw-body's stream plumbing, content-type and charset parsing, its debug and
 * on-finished hooks: bench/FLOOR.md) for what the gateway needs: the bytes up to a limit, inflated if
 * the client compressed them, parsed as JSON whatever the Content-Type (the documented clients do not
 * all send one). What goes wrong is a GatewayError, so each dialect renders it in its own format.
 */
import type { IncomingMessage } from 'node:http';
import zlib from 'node:zlib';
import { GatewayError } from '../lib/errors';

const UNITS: Readonly<Record<string, number>> = { b: 1, kb: 1024, mb: 1024 * 1024 };

/** `1mb`, `512kb`, `800b` (the configuration's syntax) → bytes. */
export function bytesOf(size: string): number {
  const match = /^(\d+)(b|kb|mb)$/i.exec(size.trim());
  if (!match) throw new Error(`not a size: ${size}`);
  return Number(match[1]) * (UNITS[(match[2] as string).toLowerCase()] as number);
}

const tooLarge = (limit: number) => new GatewayError('payload_too_large', `The request body is larger than the limit of ${limit} bytes.`);
const notJson = () => new GatewayError('invalid_request', 'The request body is not valid JSON.');
const cutOff = () => new GatewayError('invalid_request', 'The request body was cut off.');

/** The body's bytes, refused as soon as they pass `limit` (by Content-Length, before any is read). */
function readBytes(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (declared > limit) return reject(tooLarge(limit));
    // The client left while the request waited for a turn (server/turn-budget.ts): its stream is
    // destroyed already and will emit neither 'end' nor 'aborted' again.
    if (req.destroyed) return reject(cutOff());
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        reject(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size));
    };
    // The client went away mid-body; nobody will read the reply, but the request must not hang.
    const onAborted = () => {
      cleanup();
      reject(cutOff());
    };
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onAborted);
      req.off('aborted', onAborted);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onAborted);
    req.on('aborted', onAborted);
  });
}

/** Undoes a Content-Encoding, holding the inflated size to the same limit. */
function decode(bytes: Buffer, encoding: string, limit: number): Buffer {
  const options = { maxOutputLength: limit };
  try {
    if (encoding === 'gzip' || encoding === 'x-gzip') return zlib.gunzipSync(bytes, options);
    if (encoding === 'deflate') return zlib.inflateSync(bytes, options);
    if (encoding === 'br') return zlib.brotliDecompressSync(bytes, options);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw tooLarge(limit);
    throw new GatewayError('invalid_request', `The request body is not valid ${encoding} data.`);
  }
  throw new GatewayError('invalid_request', `Unsupported Content-Encoding "${encoding}": send the body as is, or gzip, deflate or br.`);
}

/**
 * The body's text, decoded as its Content-Type's charset says: UTF-8 by default; ASCII and Latin-1
 * (Java's HTTP clients send `charset=ISO-8859-1`); UTF-16 in either byte order. Another charset is
 * refused rather than decoded wrongly.
 */
function decodeText(req: IncomingMessage, bytes: Buffer): string {
  const match = /;\s*charset\s*=\s*"?([^";\s]+)"?/i.exec(req.headers['content-type'] ?? '');
  const charset = (match?.[1] ?? 'utf-8').toLowerCase();
  switch (charset) {
    case 'utf-8':
    case 'utf8':
    case 'us-ascii':
    case 'ascii':
      return bytes.toString('utf8');
    case 'iso-8859-1':
    case 'latin1':
    case 'latin-1':
      return bytes.toString('latin1');
    case 'utf-16le':
      return bytes.toString('utf16le');
    case 'utf-16be':
    case 'utf-16':
      // Without a byte-order mark UTF-16 is big-endian; with one, the mark says.
      if (charset === 'utf-16' && bytes[0] === 0xff && bytes[1] === 0xfe) return bytes.toString('utf16le');
      if (bytes.length % 2 !== 0) throw notJson();
      return Buffer.from(bytes).swap16().toString('utf16le');
    default:
      throw new GatewayError('invalid_request', `Unsupported charset "${charset}": send the body as UTF-8.`);
  }
}

/**
 * The parsed body: a JSON object or array (a bare string or number is refused as not JSON, as
 * `express.json()` did), or `{}` for an empty body.
 */
export async function readJsonBody(req: IncomingMessage, limit: number): Promise<unknown> {
  let bytes = await readBytes(req, limit);
  const encoding = (req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
  if (encoding !== 'identity' && encoding !== '') bytes = decode(bytes, encoding, limit);
  if (bytes.length === 0) return {};
  const text = decodeText(req, bytes).trim();
  if (text[0] !== '{' && text[0] !== '[') throw notJson();
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw notJson();
  }
}
