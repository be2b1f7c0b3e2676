/**
 * The access log's batching: lines reach standard output in batches, in order, and none is lost when
 * the process exits (whether by `process.exit` or by the event loop running out) or when asked to flush.
 */
import { execFileSync, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type pino from 'pino';
import { LineBatch } from '../server/log-batch';

type Writer = ReturnType<typeof pino.destination>;

/** A writer that records what it was given and how it was flushed; the test says when it has drained. */
function recordingWriter() {
  const writes: string[] = [];
  const flushes: string[] = [];
  const writer = Object.assign(new EventEmitter(), {
    write: (data: string) => writes.push(data) > 0,
    flushSync: () => flushes.push('flushSync'),
  });
  return { writer: writer as unknown as Writer, writes, flushes };
}

describe('LineBatch', () => {
  test('holds lines until the batch is full, then passes them on as one write, in order', () => {
    const { writer, writes } = recordingWriter();
    const batch = new LineBatch(writer, 30);
    batch.write('{"n":1}\n');
    batch.write('{"n":2}\n');
    batch.write('{"n":3}\n');
    expect(writes).toEqual([]);
    batch.write('{"n":4}\n'); // 32 characters waiting: past 30
    expect(writes).toEqual(['{"n":1}\n{"n":2}\n{"n":3}\n{"n":4}\n']);
    batch.write('{"n":5}\n');
    expect(writes).toHaveLength(1);
  });

  test('finish calls back once the writer has written everything (drain); past its time-out it abandons the rest', () => {
    jest.useFakeTimers();
    try {
      const { writer, writes, flushes } = recordingWriter();
      const destroy = jest.fn();
      Object.assign(writer, { destroy });
      const batch = new LineBatch(writer, 1024);
      const idle = jest.fn();
      batch.finish(500, idle);
      expect(idle).toHaveBeenCalledWith(false); // nothing handed over: nothing to wait for
      batch.write('a\n');
      const done = jest.fn();
      batch.finish(500, done);
      expect(writes).toEqual(['a\n']);
      expect(done).not.toHaveBeenCalled();
      (writer as unknown as EventEmitter).emit('drain');
      expect(done).toHaveBeenCalledWith(false);
      batch.write('b\n');
      const blocked = jest.fn();
      batch.finish(500, blocked); // standard output not read: no drain
      jest.advanceTimersByTime(499);
      expect(blocked).not.toHaveBeenCalled();
      jest.advanceTimersByTime(1);
      expect(blocked).toHaveBeenCalledWith(true);
      expect(destroy).toHaveBeenCalled(); // the writer's queue dropped
      batch.write('c\n');
      batch.flushSync(); // the exit hand-over: nothing more, no blocking write
      expect(flushes).toEqual([]);
    } finally {
      jest.useRealTimers();
    }
  });

  test('flushSync passes on what waits, then has the writer write everything before returning', () => {
    const { writer, writes, flushes } = recordingWriter();
    const batch = new LineBatch(writer, 1024);
    batch.write('a\n');
    batch.write('b\n');
    batch.flushSync();
    expect(writes).toEqual(['a\nb\n']);
    expect(flushes).toEqual(['flushSync']);
    batch.flushSync(); // nothing waits: no empty write
    expect(writes).toHaveLength(1);
  });
});

/**
 * Runs the real logger in a child process (TypeScript transpiled on load), logs `count` lines and ends
 * as `ending` says; returns its standard output.
 */
function childLog(count: number, ending: 'process.exit' | 'loop ends'): string {
  const root = path.resolve(__dirname, '..');
  const script = `
    const fs = require('fs');
    const ts = require('typescript');
    require.extensions['.ts'] = (m, file) => m._compile(ts.transpileModule(fs.readFileSync(file, 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
    }).outputText, file);
    const { createLogger, finishLog } = require(${JSON.stringify(path.join(root, 'server', 'logger.ts'))});
    const logger = createLogger('info');
    for (let i = 0; i < ${count}; i++) logger.info({ n: i }, 'line');
    ${
      ending === 'process.exit'
        ? // Written up to here (as the server's shutdown waits), then lines that only wait in the batch at exit.
          `finishLog(logger).then(() => { for (let i = ${count}; i < ${count + 30}; i++) logger.info({ n: i }, 'line'); process.exit(0); });`
        : '// nothing keeps the loop alive: beforeExit, then exit'
    }
  `;
  return execFileSync(process.execPath, ['-e', script], { cwd: root, encoding: 'utf8' });
}

describe('the access log at exit', () => {
  test.each(['process.exit', 'loop ends'] as const)('every line is written when the process ends (%s)', (ending) => {
    // 300 lines: several full batches written asynchronously, and a partial one waiting at exit.
    const out = childLog(300, ending);
    const lines = out.trim().split('\n').map((line) => JSON.parse(line) as { n: number; msg: string });
    expect(lines.map((line) => line.n)).toEqual(Array.from({ length: ending === 'process.exit' ? 330 : 300 }, (_, i) => i));
    expect(lines.every((line) => line.msg === 'line')).toBe(true);
  });
});

describe('the log when standard output is not read', () => {
  test('lines past the backlog limit are dropped, not held in memory, and a warning says how much', async () => {
    const root = path.resolve(__dirname, '..');
    // 4,000 lines of ~190 bytes (~760 KB) against a 64 KiB backlog, the pipe's own buffers and ours.
    const script = `
      const fs = require('fs');
      const ts = require('typescript');
      require.extensions['.ts'] = (m, file) => m._compile(ts.transpileModule(fs.readFileSync(file, 'utf8'), {
        compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
      }).outputText, file);
      const { createLogger } = require(${JSON.stringify(path.join(root, 'server', 'logger.ts'))});
      const logger = createLogger('info', undefined, { maxBacklogBytes: 64 * 1024 });
      process.stderr.write('ready\\n');
      for (let i = 0; i < 4000; i++) logger.info({ n: i, pad: 'x'.repeat(100) }, 'line');
      setTimeout(() => process.exit(0), 2500); // after the reader is back and the logger's 1 s flushes
    `;
    const child = spawn(process.execPath, ['-e', script], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.pause(); // nobody reads: the pipe fills, the logger's writes stop completing
    await new Promise<void>((resolve) => child.stderr.once('data', () => resolve()));
    await new Promise((resolve) => setTimeout(resolve, 800));
    const chunks: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
    child.stdout.resume();
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    await new Promise((resolve) => setImmediate(resolve));
    expect(code).toBe(0);
    const lines = Buffer.concat(chunks)
      .toString('utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { n?: number; msg: string; level: number; droppedBytes?: number });
    const kept = lines.filter((line) => line.msg === 'line');
    const warnings = lines.filter((line) => line.msg.startsWith('log lines dropped'));
    expect(kept.length).toBeGreaterThan(0);
    expect(kept.length).toBeLessThan(4000);
    // What was kept is in order: whole batches were dropped, never lines reordered.
    const ns = kept.map((line) => line.n as number);
    expect(ns).toEqual([...ns].sort((a, b) => a - b));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.level).toBe(40);
    const written = Buffer.byteLength(JSON.stringify(kept[0])) + 1;
    expect(warnings[0]?.droppedBytes).toBeGreaterThanOrEqual((4000 - kept.length) * (written - 10));
  }, 20_000);
});

describe('the end of the process when standard output is not read', () => {
  test('on a pipe (docker, `| less`): finishLog gives up after its time-out and process.exit() ends the process at once', async () => {
    const root = path.resolve(__dirname, '..');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gateway-fifo-'));
    const fifo = path.join(dir, 'stdout');
    execFileSync('mkfifo', [fifo]);
    // A reader that never reads (opened first, so the child's end can be opened), as a stopped log reader.
    const reader = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    const writeEnd = fs.openSync(fifo, 'w');
    const script = `
      const fs = require('fs');
      const ts = require('typescript');
      require.extensions['.ts'] = (m, file) => m._compile(ts.transpileModule(fs.readFileSync(file, 'utf8'), {
        compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
      }).outputText, file);
      const { createLogger, finishLog } = require(${JSON.stringify(path.join(root, 'server', 'logger.ts'))});
      const logger = createLogger('info');
      for (let n = 0; n < 2000; n++) logger.info({ n, pad: 'x'.repeat(150) }, 'line'); // ~500 KB: far past the pipe
      setTimeout(() => finishLog(logger, 500).then(({ abandoned }) => {
        process.stderr.write('exiting abandoned=' + abandoned + '\\n');
        process.exit(0); // as the server's shutdown does
      }), 100);
    `;
    const child = spawn(process.execPath, ['-e', script], { cwd: root, stdio: ['ignore', writeEnd, 'pipe'] });
    fs.closeSync(writeEnd);
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    try {
      const exited = await new Promise<number | null | 'still running'>((resolve) => {
        child.once('exit', (code) => resolve(code));
        setTimeout(() => resolve('still running'), 8_000);
      });
      if (exited === 'still running') child.kill('SIGKILL');
      expect(stderr).toContain('exiting abandoned=true');
      expect(exited).toBe(0);
    } finally {
      fs.closeSync(reader);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 20_000);
});

describe('a crash while standard output is read slowly', () => {
  test('every line still reaches the pipe, in order and whole (a write parked on a full pipe included)', async () => {
    const root = path.resolve(__dirname, '..');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gateway-fifo-'));
    const fifo = path.join(dir, 'stdout');
    execFileSync('mkfifo', [fifo]);
    const reader = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    const writeEnd = fs.openSync(fifo, 'w');
    const script = `
      const fs = require('fs');
      const ts = require('typescript');
      require.extensions['.ts'] = (m, file) => m._compile(ts.transpileModule(fs.readFileSync(file, 'utf8'), {
        compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
      }).outputText, file);
      const { createLogger } = require(${JSON.stringify(path.join(root, 'server', 'logger.ts'))});
      const logger = createLogger('info');
      const pad = 'x'.repeat(300);
      let i = 0;
      const burst = () => { for (let k = 0; k < 2000; k++) logger.info({ i: i++, pad }, 'line'); };
      burst();
      setTimeout(burst, 100);
      setTimeout(() => { throw new Error('crash'); }, 350); // an uncaught exception: no shutdown, only the exit hand-over
    `;
    const child = spawn(process.execPath, ['-e', script], { cwd: root, stdio: ['ignore', writeEnd, 'ignore'] });
    fs.closeSync(writeEnd);
    try {
      // A slow reader: nothing for 1 s (the pipe fills, writes are parked), then everything.
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      const chunks: Buffer[] = [];
      let exited = false;
      child.once('exit', () => (exited = true));
      const buffer = Buffer.alloc(64 * 1024);
      for (const started = Date.now(); Date.now() - started < 15_000; ) {
        let n = 0;
        try {
          n = fs.readSync(reader, buffer);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
        }
        if (n > 0) chunks.push(Buffer.from(buffer.subarray(0, n)));
        else if (exited) break;
        else await new Promise((resolve) => setTimeout(resolve, 10));
      }
      const lines = Buffer.concat(chunks).toString('utf8').trim().split('\n');
      const numbers = lines.map((line) => (JSON.parse(line) as { i: number }).i);
      expect(numbers).toEqual(Array.from({ length: 4000 }, (_, i) => i));
    } finally {
      fs.closeSync(reader);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
