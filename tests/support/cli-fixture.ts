/**
 * A fresh database file per test and a `run(...argv)` that drives the admin CLI in-process against it,
 * capturing what it prints.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runCli } from '../../db/cli';
import { Store } from '../../db/store';

export interface CliFixture {
  store: Store;
  out: string[];
  err: string[];
  run(...argv: string[]): number;
  /** The last line printed, parsed as JSON (for `--json` calls). */
  lastJson(): any; // eslint-disable-line @typescript-eslint/no-explicit-any -- CLI output is checked field by field
}

/** Registers beforeEach/afterEach hooks; read the fixture's fields inside tests only. */
export function useCliFixture(): CliFixture {
  let dir = '';
  const fixture = {
    out: [] as string[],
    err: [] as string[],
    run: (...argv: string[]) => runCli(argv, { out: (t) => fixture.out.push(t), err: (t) => fixture.err.push(t) }, fixture.store),
    lastJson: () => JSON.parse(fixture.out[fixture.out.length - 1] as string),
  } as CliFixture;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gateway-cli-'));
    fixture.store = new Store(path.join(dir, 'g.db'));
    fixture.out.length = 0;
    fixture.err.length = 0;
  });
  afterEach(() => {
    fixture.store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return fixture;
}
