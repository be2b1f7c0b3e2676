/**
 * `npm run bench:floor`: how close can any server on this stack get to the yardstick? Beside the
 * minimal proxy it measures servers that do the least a chat request needs (read the JSON body, ask
 * Ollama for the whole answer through undici, reply with JSON): on plain `node:http`; the same with
 * the prototype change Express makes on every request; Express 5 with `express.json()` as usually
 * served; the same app on the gateway's server (server/express-server.ts); and the gateway with every
 * feature on. The figures are the CPU
 * each uses per request at one connection (the kernel's count) and req/s at 64 connections as a ratio
 * of the proxy's. Rounds alternate the servers and the median is kept: this machine is noisy.
 * Writes bench/FLOOR.md. Options: FLOOR_ROUNDS (default 3), FLOOR_N1 (2000), FLOOR_N64 (6000).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { run, type Target } from './load';
import { cpuSeconds, killChildren, prepareDatabase, root, startChild, startDouble, startGateway } from './processes';

const ROUNDS = Number(process.env.FLOOR_ROUNDS ?? 3);
const N1 = Number(process.env.FLOOR_N1 ?? 2000);
const N64 = Number(process.env.FLOOR_N64 ?? 6000);

interface Contender {
  name: string;
  target: Target;
  pid: number | undefined;
  cpuMs: number[];
  rps64: number[];
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gateway-floor-'));
  const db = path.join(dir, 'bench.db');
  const key = prepareDatabase(db);
  const double = await startDouble(0, 20);
  const messages = [{ role: 'user', content: 'Say something short about benchmarks.' }];
  const json = { 'content-type': 'application/json' };
  const chatBody = (model: string, extra: Record<string, unknown> = {}) => JSON.stringify({ model, messages, ...extra });

  const proxy = await startChild(path.join(root, 'dist', 'bench', 'proxy.js'), [double.url]);
  const plain = await startChild(path.join(root, 'dist', 'bench', 'floor-server.js'), ['http', double.url]);
  const framework = await startChild(path.join(root, 'dist', 'bench', 'floor-server.js'), ['express', double.url]);
  const proto = await startChild(path.join(root, 'dist', 'bench', 'floor-server.js'), ['proto', double.url]);
  const born = await startChild(path.join(root, 'dist', 'bench', 'floor-server.js'), ['express-born', double.url]);
  const gateway = await startGateway({ OLLAMA_HOST: double.url, GATEWAY_DB: db, QUEUE_LIMIT: '100000', BACKEND_CONCURRENCY: '1000' }, path.join(dir, 'gateway.log'));

  const minimal = (name: string, url: string, pid: number | undefined): Contender => ({
    name,
    target: { url, path: '/v1/chat/completions', headers: json, body: chatBody('llama3.2') },
    pid,
    cpuMs: [],
    rps64: [],
  });
  const contenders: Contender[] = [
    { name: 'minimal proxy (the yardstick)', target: { url: proxy.url, path: '/api/chat', headers: json, body: chatBody('llama3.2', { stream: false }) }, pid: proxy.child.pid, cpuMs: [], rps64: [] },
    minimal('node:http: body → undici → JSON', plain.url, plain.child.pid),
    minimal('the same + a prototype change per request', proto.url, proto.child.pid),
    minimal('Express 5 + express.json(), same', framework.url, framework.child.pid),
    minimal('the same Express app, born prototypes', born.url, born.child.pid),
    {
      name: 'the gateway, every feature on',
      target: { url: gateway.url, path: '/v1/chat/completions', headers: { ...json, authorization: `Bearer ${key.api_key}` }, body: chatBody('bench-model') },
      pid: gateway.child.pid,
      cpuMs: [],
      rps64: [],
    },
  ];

  for (let round = 1; round <= ROUNDS; round++) {
    for (const c of contenders) {
      await run(c.target, 1, 200); // warm-up
      const before = cpuSeconds(c.pid);
      const one = await run(c.target, 1, N1);
      c.cpuMs.push(((cpuSeconds(c.pid) - before) * 1000) / N1);
      const many = await run(c.target, 64, N64);
      c.rps64.push(many.rps);
      if (one.errors || many.errors) throw new Error(`${c.name}: ${one.errors + many.errors} errors`);
      console.log(`round ${round}  ${c.name.padEnd(34)} CPU ${c.cpuMs[c.cpuMs.length - 1]?.toFixed(3)} ms/req  ${many.rps.toFixed(0)} req/s at 64`);
    }
  }

  const yardstick = median(contenders[0]?.rps64 ?? []);
  const lines = [
    '# The floor of the stack',
    '',
    `Made by \`npm run bench:floor\` on ${new Date().toISOString()} (${os.cpus().length} cores, Node ${process.version}), median of ${ROUNDS} alternating rounds.`,
    'The Ollama double answers 20 tokens with no delay, asked for the whole answer. The minimal servers do',
    'the least a chat request needs (JSON body in, one undici call for the whole answer, JSON out) and',
    'nothing else: no auth, limits, credits, usage rows, logs or metrics. "A prototype change per request"',
    'is plain node:http plus the one step of Express that costs most; "born prototypes" is an Express app',
    'on the gateway\'s server (server/express-server.ts), where that step changes nothing. CPU is the',
    'kernel\'s count (user + system) at one connection; the issue\'s throughput target is 0.6 × the proxy at 64.',
    '',
    '| server | CPU per request, 1 conn | req/s at 64 conns | ÷ proxy |',
    '|---|---|---|---|',
    ...contenders.map((c) => {
      const rps = median(c.rps64);
      return `| ${c.name} | ${median(c.cpuMs).toFixed(3)} ms | ${rps.toFixed(0)} | ${(rps / yardstick).toFixed(2)} |`;
    }),
    '',
  ];
  const report = lines.join('\n');
  console.log(`\n${report}`);
  fs.writeFileSync(path.join(root, 'bench', 'FLOOR.md'), report);
  killChildren();
  fs.rmSync(dir, { recursive: true, force: true });
}

main().catch((err: unknown) => {
  console.error(err);
  killChildren();
  process.exit(1);
});
