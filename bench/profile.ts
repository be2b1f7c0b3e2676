/**
 * `npm run bench:profile`: runs the gateway under `node --cpu-prof` with the benchmark's load and
 * prints where its CPU goes — self time by area (our directories, each package, Node internals, GC)
 * and the heaviest functions, self and inclusive. Find the cost before changing code.
 *
 * Options (environment): PROFILE_TARGET (`openai`, `stream` or `covalid`, default `openai`),
 * PROFILE_N (requests, default 3000), PROFILE_CONNS (connections, default 1), PROFILE_TOP (rows, 25),
 * PROFILE_OFF=1 (no profiler: only the gateway's CPU per request, as the kernel counts it),
 * PROFILE_DELAY_MS and PROFILE_TOKENS (the double's token pace and answer length, default 0 and 20).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { run, type Target } from './load';
import { cpuSplit, killChildren, prepareDatabase, startDouble, startGateway } from './processes';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const TARGET = process.env.PROFILE_TARGET ?? 'openai';
const N = Number(process.env.PROFILE_N ?? 3000);
const CONNS = Number(process.env.PROFILE_CONNS ?? 1);
const TOP = Number(process.env.PROFILE_TOP ?? 25);
/** Only the kernel's CPU count, without the profiler's own overhead. */
const PROFILE_OFF = process.env.PROFILE_OFF === '1';

/** Which part of the program a frame belongs to: our top-level directory, a package, Node, or V8. */
function areaOf(frame: CallFrame): string {
  const { url, functionName } = frame;
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1] as string;
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[0] === 'internal' ? url.slice(14).split('/')[0] : url.slice(5)}`;
  const ours = /dist\/([^/]+)\/(.+)$/.exec(url);
  if (ours) return `${ours[1]}/${ours[2]}`;
  return url;
}

const label = (f: CallFrame) => `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/(node_modules|dist)\//, '')}:${f.lineNumber + 1}`;

function summarise(profile: CpuProfile, requests: number): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));

  const selfByArea = new Map<string, number>();
  const selfByFn = new Map<string, number>();
  const inclusiveByFn = new Map<string, number>();
  let busy = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id) as ProfileNode;
    if (node.callFrame.functionName === '(idle)') continue;
    busy += us;
    const area = areaOf(node.callFrame);
    selfByArea.set(area, (selfByArea.get(area) ?? 0) + us);
    selfByFn.set(label(node.callFrame), (selfByFn.get(label(node.callFrame)) ?? 0) + us);
    // Inclusive: every distinct function on the stack gets this sample once (recursion counted once).
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const frame = (byId.get(cur) as ProfileNode).callFrame;
      if (!frame.url) continue;
      const l = label(frame);
      if (seen.has(l)) continue;
      seen.add(l);
      inclusiveByFn.set(l, (inclusiveByFn.get(l) ?? 0) + us);
    }
  }
  const perRequest = (us: number) => `${(us / requests / 1000).toFixed(3)} ms/req`;
  const table = (title: string, entries: Map<string, number>) =>
    [
      `\n${title}`,
      ...[...entries.entries()]
        .sort((a, b) => b[1] - a[1])
        .slice(0, TOP)
        .map(([name, us]) => `  ${((100 * us) / busy).toFixed(1).padStart(5)} %  ${perRequest(us).padStart(14)}  ${name}`),
    ].join('\n');
  return [
    `busy CPU ${(busy / 1e6).toFixed(2)} s for ${requests} requests = ${perRequest(busy)}`,
    table('self time by area', selfByArea),
    table('self time by function', selfByFn),
    table('inclusive time by function', inclusiveByFn),
  ].join('\n');
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gateway-profile-'));
  const db = path.join(dir, 'bench.db');
  const key = prepareDatabase(db);
  const double = await startDouble(Number(process.env.PROFILE_DELAY_MS ?? 0), Number(process.env.PROFILE_TOKENS ?? 20));
  const gateway = await startGateway(
    { OLLAMA_HOST: double.url, GATEWAY_DB: db, QUEUE_LIMIT: '100000', BACKEND_CONCURRENCY: '1000' },
    path.join(dir, 'gateway.log'),
    PROFILE_OFF ? [] : ['--cpu-prof', `--cpu-prof-dir=${dir}`],
  );
  const messages = [{ role: 'user', content: 'Say something short about benchmarks.' }];
  const json = { 'content-type': 'application/json' };
  const targets: Record<string, Target> = {
    openai: { url: gateway.url, path: '/v1/chat/completions', headers: { ...json, authorization: `Bearer ${key.api_key}` }, body: JSON.stringify({ model: 'bench-model', messages }) },
    stream: { url: gateway.url, path: '/v1/chat/completions', headers: { ...json, authorization: `Bearer ${key.api_key}` }, body: JSON.stringify({ model: 'bench-model', messages, stream: true }) },
    covalid: {
      url: gateway.url,
      path: '/api/chat.php',
      headers: { ...json, 'x-client-key': key.client_key, 'x-client-secret': key.client_secret },
      body: JSON.stringify({ prompt: messages[0]?.content, model: 'bench-model' }),
    },
  };
  const target = targets[TARGET];
  if (!target) throw new Error(`PROFILE_TARGET must be one of ${Object.keys(targets).join(', ')}`);
  await run(target, CONNS, 300, TARGET === 'stream'); // warm-up
  const cpuBefore = cpuSplit(gateway.child.pid);
  const stats = await run(target, CONNS, N, TARGET === 'stream');
  const cpuAfter = cpuSplit(gateway.child.pid);
  const userMs = ((cpuAfter.user - cpuBefore.user) * 1000) / N;
  const systemMs = ((cpuAfter.system - cpuBefore.system) * 1000) / N;
  const cpuMs = userMs + systemMs;
  // The kernel's count of the gateway's CPU (user + system): the profile's samples also count time
  // the process sat descheduled inside a system call, which on 2 shared cores is a lot.
  console.log(`${TARGET}: ${stats.rps.toFixed(0)} req/s, mean ${stats.meanMs.toFixed(3)} ms, errors ${stats.errors}, gateway CPU ${cpuMs.toFixed(3)} ms/req (user ${userMs.toFixed(3)}, kernel ${systemMs.toFixed(3)})`);

  const exited = new Promise((resolve) => gateway.child.once('exit', resolve));
  gateway.child.kill('SIGTERM'); // a clean exit writes the profile
  await exited;
  killChildren();
  if (PROFILE_OFF) return fs.rmSync(dir, { recursive: true, force: true });
  const file = fs.readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error('the gateway wrote no profile');
  const profile = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')) as CpuProfile;
  console.log(summarise(profile, N + 300));
  const kept = path.join(os.tmpdir(), `gateway-${TARGET}.cpuprofile`);
  fs.copyFileSync(path.join(dir, file), kept);
  console.log(`\nprofile kept at ${kept} (open it in Chrome DevTools → Performance)`);
  fs.rmSync(dir, { recursive: true, force: true });
}

main().catch((err: unknown) => {
  console.error(err);
  killChildren();
  process.exit(1);
});
