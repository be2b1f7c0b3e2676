/**
 * The benchmark's child processes: the Ollama double, the minimal proxy and the gateway each get their
 * own event loop, so the load generator never measures its own work. Shared by `run.ts` and `profile.ts`.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';

export const root = path.resolve(__dirname, '..', '..');
export const dist = path.join(root, 'dist');

const children: ChildProcess[] = [];

/** A port free right now, for a child that must be told its port up front. */
function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts the gateway as users run it (LOG_LEVEL info: one JSON access-log line per request, written
 * to a file as a service manager would) and waits until /ready answers. `nodeArgs` go before the
 * script (e.g. `--cpu-prof`).
 */
export async function startGateway(env: NodeJS.ProcessEnv, logFile: string, nodeArgs: string[] = []): Promise<{ url: string; child: ChildProcess }> {
  const port = await freePort();
  const log = fs.openSync(logFile, 'a');
  // BENCH_GATEWAY_NODE_ARGS: flags to try on the gateway alone (e.g. GC sizes), without touching the others.
  const extra = (process.env.BENCH_GATEWAY_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...extra, ...nodeArgs, path.join(dist, 'server', 'main.js')], {
    env: { ...process.env, LOG_LEVEL: 'info', ...env, PORT: String(port) },
    stdio: ['ignore', log, 'inherit'],
  });
  children.push(child);
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`${url}/ready`)).ok) return { url, child };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('the gateway did not become ready');
}

/** Starts a child that prints its URL as its first line. */
export function startChild(script: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [script, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.on('line', (line) => {
      const match = /(http:\/\/[\d.]+:\d+)/.exec(line);
      if (match) resolve({ url: match[1] as string, child });
    });
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code}`)));
  });
}

/** Starts the Ollama double answering `tokens` tokens, `delayMs` apart. */
/** The double in its own process; `stamp`: each token carries the time it was written (load.ts reads it). */
export function startDouble(delayMs: number, tokens: number, stamp = false): Promise<{ url: string; child: ChildProcess }> {
  return startChild(path.join(dist, 'bench', 'double-process.js'), [String(delayMs), String(tokens), ...(stamp ? ['stamp'] : [])]);
}

export function killChildren(): void {
  for (const child of children) child.kill('SIGTERM');
}

/** User + system CPU seconds a process has used, from /proc (Linux). */
export function cpuSeconds(pid: number | undefined): number {
  const { user, system } = cpuSplit(pid);
  return user + system;
}

/** A process's CPU so far, user and kernel apart (the kernel's share is mostly socket calls). */
export function cpuSplit(pid: number | undefined): { user: number; system: number } {
  if (!pid) return { user: NaN, system: NaN };
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  // After the command name: utime and stime are fields 14 and 15 of stat, in clock ticks (100 per second).
  return { user: Number(fields[11]) / 100, system: Number(fields[12]) / 100 };
}

export function peakMemoryMb(pid: number | undefined): number {
  if (!pid) return NaN;
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const hwm = /VmHWM:\s+(\d+) kB/.exec(status);
  return hwm ? Number(hwm[1]) / 1024 : NaN;
}

function cli(db: string, ...args: string[]): string {
  return execFileSync(process.execPath, [path.join(dist, 'db', 'cli.js'), ...args, '--db', db], { encoding: 'utf8' });
}

export interface BenchKey {
  client_key: string;
  client_secret: string;
  api_key: string;
}

/**
 * A database with every per-request feature on: a priced model and a limited organisation with
 * credits, so each request authenticates, checks limits, reserves, settles and writes a usage row.
 */
export function prepareDatabase(db: string): BenchKey {
  cli(db, 'models', 'set', 'bench-model', '--ollama', 'llama3.2', '--input-cost', '0.001', '--output-cost', '0.002');
  const key = JSON.parse(cli(db, 'keys', 'create', '--name', 'bench', '--credits', '1000000000', '--json')) as BenchKey;
  // Generous limits, so the limit checks run on every request without refusing any.
  cli(db, 'orgs', 'set', 'bench', '--rpm', '100000000', '--tpm', '1000000000000');
  return key;
}
