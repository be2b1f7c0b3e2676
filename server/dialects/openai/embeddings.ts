/**
 * `POST /v1/embeddings`: input string or string array → Ollama /api/embed, vectors back as float
 * arrays or, with `encoding_format: "base64"` (openai-node's default!), as the base64 of the raw
 * little-endian float32 bytes of each vector.
 */
import type { Response } from 'express';
import { replyJson } from '../../json-reply';
import { endInSlices, stallMsFor, writeInSlices } from '../../unread-reply';
import { z } from 'zod';
import { badParam, parseOrThrow } from './validation';

/** OpenAI's limit on inputs per request. */
const MAX_INPUTS = 2048;

const embeddingBodySchema = z.object({
  model: z.string().min(1),
  input: z.union([z.string(), z.array(z.string()), z.array(z.number()), z.array(z.array(z.number()))]),
  encoding_format: z.unknown().optional(),
  dimensions: z.number().int().min(1).nullish(),
  user: z.string().nullish(),
});

export interface ParsedEmbeddings {
  model: string;
  inputs: string[];
  encoding: 'float' | 'base64';
}

export function parseEmbeddingsBody(raw: unknown): ParsedEmbeddings {
  const body = parseOrThrow(embeddingBodySchema, raw);
  const input = body.input;
  if (Array.isArray(input) && input.some((item) => typeof item !== 'string')) {
    throw badParam('input', 'Token-id input is not supported by this gateway; send the text as a string or an array of strings.');
  }
  const inputs = typeof input === 'string' ? [input] : (input as string[]);
  if (inputs.length === 0) throw badParam('input', "'input' must not be an empty array.");
  if (inputs.length > MAX_INPUTS) throw badParam('input', `'input' may hold at most ${MAX_INPUTS} items.`);
  const format = body.encoding_format ?? 'float';
  if (format !== 'float' && format !== 'base64') {
    throw badParam('encoding_format', "Invalid value for 'encoding_format': expected 'float' or 'base64'.");
  }
  if (body.dimensions !== null && body.dimensions !== undefined) {
    throw badParam('dimensions', "The 'dimensions' parameter is not supported: Ollama returns each model's native size.");
  }
  return { model: body.model, inputs, encoding: format };
}

/** The raw little-endian float32 bytes, base64: exactly what openai-node decodes. */
export function float32Base64(vector: number[]): string {
  const bytes = Buffer.alloc(vector.length * 4);
  vector.forEach((x, i) => bytes.writeFloatLE(x, i * 4));
  return bytes.toString('base64');
}

export function renderEmbeddings(model: string, embeddings: number[][], encoding: 'float' | 'base64', promptTokens: number): Record<string, unknown> {
  return {
    object: 'list',
    data: embeddings.map((vector, index) => ({
      object: 'embedding',
      index,
      embedding: encoding === 'base64' ? float32Base64(vector) : vector,
    })),
    model,
    usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
  };
}

/**
 * Past this many numbers (64 vectors of 4,096) a reply is written a piece at a time: serialising 2,048
 * vectors of 4,096 in one JSON.stringify is a 115 MB string and about a second with the event loop
 * blocked, while every stream on the gateway waits.
 */
const PIECEWISE_NUMBERS = 64 * 4_096;
const VECTORS_PER_PIECE = 32;

/**
 * Replies with the embeddings: as one JSON body when small, else the same bytes in pieces (chunked),
 * the event loop free between them and the client's pace respected.
 */
export async function replyEmbeddings(res: Response, model: string, embeddings: number[][], encoding: 'float' | 'base64', promptTokens: number): Promise<void> {
  let numbers = 0;
  for (const vector of embeddings) numbers += vector.length;
  if (numbers <= PIECEWISE_NUMBERS) return replyJson(res, renderEmbeddings(model, embeddings, encoding, promptTokens));
  const stallMs = stallMsFor(res);
  res.statusCode = 200;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  // The same text as JSON.stringify(renderEmbeddings(...)), key for key.
  let piece = '{"object":"list","data":[';
  for (let index = 0; index < embeddings.length; index++) {
    const vector = embeddings[index] as number[];
    piece += `${index > 0 ? ',' : ''}${JSON.stringify({ object: 'embedding', index, embedding: encoding === 'base64' ? float32Base64(vector) : vector })}`;
    if ((index + 1) % VECTORS_PER_PIECE !== 0) continue;
    // A slice at a time, each once the client took the one before; given up (nothing taken for
    // SSE_STALL_MS) or gone, the connection and the vectors are let go.
    const taken = await writeInSlices(res, Buffer.from(piece), stallMs);
    piece = '';
    if (!taken) return;
  }
  const end = `${piece}],"model":${JSON.stringify(model)},"usage":${JSON.stringify({ prompt_tokens: promptTokens, total_tokens: promptTokens })}}`;
  await endInSlices(res, Buffer.from(end), stallMs);
}
