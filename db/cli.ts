#!/usr/bin/env node
/**
 * The admin CLI: `npm run cli -- <command>` or `ollama-gateway-admin <command>`.
 * Every command prints a human table, or JSON with `--json` for scripts.
 */
import { parseArgs } from 'node:util';
import { Store } from './store';
import { COMMANDS, type CommandContext, UsageError } from './cli-commands';

export interface CliIo {
  out(text: string): void;
  err(text: string): void;
}

const HELP = `Usage: ollama-gateway-admin <command> [options]   (database: $GATEWAY_DB or --db, default ./data/gateway.db)

${COMMANDS.map((c) => `  ${c.usage}`).join('\n')}

Add --json to any command for machine-readable output.`;

/** Every option any command takes, so an option's value is never taken for a command word. */
const ALL_OPTIONS: Record<string, { type: 'string' | 'boolean' }> = Object.assign(
  { json: { type: 'boolean' as const }, db: { type: 'string' as const } },
  ...COMMANDS.map((c) => c.options),
);

/** The words that choose the command, wherever the options stand (`--db x.db keys list` too). */
function commandWords(argv: string[]): string[] {
  return parseArgs({ args: argv, allowPositionals: true, strict: false, options: ALL_OPTIONS }).positionals;
}

/** Runs one CLI invocation against `store` (opened from --db / $GATEWAY_DB when not given). Returns the exit code. */
export function runCli(argv: string[], io: CliIo, store?: Store): number {
  const words = commandWords(argv);
  const command = COMMANDS.find((c) => c.words.every((w, i) => words[i] === w));
  if (!command || argv.includes('--help') || argv.includes('-h')) {
    (command ? io.out : io.err)(command ? command.usage : HELP);
    return command ? 0 : 2;
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: { json: { type: 'boolean' }, db: { type: 'string' }, ...command.options },
    });
  } catch (err) {
    io.err(`${(err as Error).message}\nUsage: ${command.usage}`);
    return 2;
  }
  const own = !store;
  const db = store ?? new Store(String(parsed.values.db ?? process.env.GATEWAY_DB ?? './data/gateway.db'));
  const ctx: CommandContext = {
    store: db,
    args: parsed.positionals.slice(command.words.length),
    // parseArgs types its values from the option table, which is per command; the commands validate them.
    values: parsed.values as Record<string, string | boolean | undefined>,
    json: parsed.values.json === true,
    out: io.out,
  };
  try {
    command.run(ctx);
    return 0;
  } catch (err) {
    io.err(err instanceof UsageError ? `${err.message}\nUsage: ${command.usage}` : `Error: ${(err as Error).message}`);
    return err instanceof UsageError ? 2 : 1;
  } finally {
    if (own) db.close();
  }
}

if (require.main === module) {
  const code = runCli(process.argv.slice(2), { out: (t) => console.log(t), err: (t) => console.error(t) });
  process.exitCode = code;
}
