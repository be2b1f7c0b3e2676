/**
 * `npm run bench:heap`: what a stream in flight holds in the gateway's heap. Starts the double and a
 * gateway, takes a heap snapshot, opens a burst of streams, takes another while they run, and reports
 * the new objects a stream (ids above the first snapshot's): in all, by V8 type and name, and by the
 * nearest owner on each object's retainer path (the reply, the request, a socket, the answer stream).
 * Every young-generation collection during a burst copies this state, so it is what those pauses cost.
 * Options (environment): HEAP_STREAMS (default 500), HEAP_TOP (rows, default 20).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Pool } from 'undici';
import { killChildren, prepareDatabase, startDouble, startGateway } from './processes';

const STREAMS = Number(process.env.HEAP_STREAMS ?? 500);
const TOP = Number(process.env.HEAP_TOP ?? 20);
/** Objects whose share is reported as theirs: the first of these on a new object's retainer path owns it. */
const OWNERS = new Set([
  'AppRequest', 'AppResponse', 'Socket', 'Client', 'Parser', 'Request', 'AnswerStream', 'RelayedAnswer',
  'SseWriter', 'Admission', 'TCP', 'HTTPParser', 'Timeout', 'FastTimer',
]);

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]]; edge_fields: string[]; edge_types: [string[]] } };
  nodes: number[];
  edges: number[];
  strings: string[];
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits for the snapshot file V8 writes on SIGUSR2 (`--heapsnapshot-signal`) to be complete. */
async function snapshotOf(pid: number, dir: string): Promise<Snapshot> {
  const before = new Set(fs.readdirSync(dir));
  process.kill(pid, 'SIGUSR2');
  for (let i = 0; i < 600; i++) {
    await sleep(100);
    const file = fs.readdirSync(dir).find((f) => f.endsWith('.heapsnapshot') && !before.has(f));
    if (!file) continue;
    const text = fs.readFileSync(path.join(dir, file), 'utf8');
    // Written in pieces: complete once it parses.
    try {
      return JSON.parse(text) as Snapshot;
    } catch {
      // not yet
    }
  }
  throw new Error('no heap snapshot came');
}

function summarise(first: Snapshot, second: Snapshot): string[] {
  const meta = second.snapshot.meta;
  const fields = meta.node_fields;
  const width = fields.length;
  const [types] = meta.node_types;
  const at = (name: string) => fields.indexOf(name);
  const [TYPE, NAME, ID, SIZE, EDGES] = [at('type'), at('name'), at('id'), at('self_size'), at('edge_count')];
  const edgeWidth = meta.edge_fields.length;
  const [EDGE_TYPE, EDGE_TO] = [meta.edge_fields.indexOf('type'), meta.edge_fields.indexOf('to_node')];
  const [edgeTypes] = meta.edge_types;
  const isHeapObject = (s: Snapshot, i: number) => !['synthetic', 'native', 'code'].includes(s.snapshot.meta.node_types[0][s.nodes[i + TYPE] as number] as string);

  let firstMaxId = 0;
  for (let i = 0; i < first.nodes.length; i += width) if (isHeapObject(first, i)) firstMaxId = Math.max(firstMaxId, first.nodes[i + ID] as number);
  const isNew = (i: number) => (second.nodes[i + ID] as number) > firstMaxId;

  // One retainer for each object, preferring a new one (state made with the stream) over an old one.
  const parent = new Map<number, number>();
  let edge = 0;
  for (let i = 0; i < second.nodes.length; i += width) {
    for (let j = 0; j < (second.nodes[i + EDGES] as number); j++, edge += edgeWidth) {
      if (edgeTypes[second.edges[edge + EDGE_TYPE] as number] === 'weak') continue;
      const to = second.edges[edge + EDGE_TO] as number;
      const known = parent.get(to);
      if (known === undefined || (!isNew(known) && isNew(i))) parent.set(to, i);
    }
  }
  const nameOf = (i: number) => second.strings[second.nodes[i + NAME] as number] as string;
  const typeOf = (i: number) => types[second.nodes[i + TYPE] as number] as string;
  const ownerOf = (i: number): string => {
    if (typeOf(i) === 'object' && OWNERS.has(nameOf(i))) return nameOf(i);
    let at = parent.get(i);
    for (let depth = 0; at !== undefined && depth < 14; depth++, at = parent.get(at)) {
      if (!isNew(at)) return '(held by an older object)';
      if (typeOf(at) === 'object' && OWNERS.has(nameOf(at))) return nameOf(at);
    }
    return '(no owner found)';
  };

  let total = 0;
  const byKind = new Map<string, [bytes: number, count: number]>();
  const byOwner = new Map<string, [bytes: number, count: number]>();
  const add = (map: Map<string, [number, number]>, key: string, bytes: number) => {
    const entry = map.get(key) ?? [0, 0];
    entry[0] += bytes;
    entry[1]++;
    map.set(key, entry);
  };
  for (let i = 0; i < second.nodes.length; i += width) {
    if (!isHeapObject(second, i) || !isNew(i)) continue;
    const bytes = second.nodes[i + SIZE] as number;
    total += bytes;
    const type = typeOf(i);
    add(byKind, type.includes('string') ? `${type}` : `${type}: ${nameOf(i).slice(0, 40)}`, bytes);
    add(byOwner, ownerOf(i), bytes);
  }
  const rows = (map: Map<string, [number, number]>) =>
    [...map]
      .sort((a, b) => b[1][0] - a[1][0])
      .slice(0, TOP)
      .map(([key, [bytes, count]]) => `| ${key} | ${(bytes / STREAMS).toFixed(0)} | ${(count / STREAMS).toFixed(1)} |`);
  return [
    `New objects while ${STREAMS} streams run: ${(total / STREAMS / 1024).toFixed(1)} KB a stream (JIT code left out).`,
    '',
    '| by owner | bytes a stream | objects a stream |',
    '|---|---|---|',
    ...rows(byOwner),
    '',
    '| by kind | bytes a stream | objects a stream |',
    '|---|---|---|',
    ...rows(byKind),
  ];
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gateway-heap-'));
  const db = path.join(dir, 'bench.db');
  const key = prepareDatabase(db);
  // Slow tokens, so every stream is still running when the second snapshot is taken.
  const double = await startDouble(1000, 60, true);
  const gateway = await startGateway(
    { OLLAMA_HOST: double.url, GATEWAY_DB: db, QUEUE_LIMIT: '100000', BACKEND_CONCURRENCY: '100000' },
    path.join(dir, 'gateway.log'),
    ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${dir}`],
  );
  const pid = gateway.child.pid as number;
  await sleep(500);
  const first = await snapshotOf(pid, dir);
  const pool = new Pool(gateway.url, { connections: STREAMS, headersTimeout: 0, bodyTimeout: 0 });
  const body = JSON.stringify({ model: 'bench-model', messages: [{ role: 'user', content: 'Say something short about benchmarks.' }], stream: true });
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${key.api_key}` };
  let opened = 0;
  for (let i = 0; i < STREAMS; i++) {
    pool.request({ method: 'POST', path: '/v1/chat/completions', headers, body }).then(
      (res) => {
        opened++;
        res.body.resume();
      },
      () => undefined,
    );
  }
  while (opened < STREAMS) await sleep(100);
  await sleep(2000); // a couple of tokens each
  const second = await snapshotOf(pid, dir);
  console.log(summarise(first, second).join('\n'));
  await pool.destroy();
  killChildren();
  fs.rmSync(dir, { recursive: true, force: true });
}

main().catch((err: unknown) => {
  console.error(err);
  killChildren();
  process.exit(1);
});
