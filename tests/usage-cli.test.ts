/**
 * The admin CLI's limit options (`keys create --rpm …`, `orgs set`) and the `usage` report, in JSON
 * and as a table, against a real database file.
 */
import { useCliFixture } from './support/cli-fixture';
import type { UsageRecord } from '../db/store';
import type { Principal } from '../lib/types';

describe('limits and usage in the admin CLI', () => {
  const cli = useCliFixture();
  const run = cli.run;
  const lastJson = () => cli.lastJson();


  test('keys create stores every limit option; the principal carries them', () => {
    expect(
      run('keys', 'create', '--name', 'kid', '--rpm', '5', '--tpm', '2000', '--daily-credits', '1.5', '--monthly-credits', '20',
        '--models', 'covalid-1.0, llama3.2', '--expires', '2031-06-01T00:00:00Z', '--json'),
    ).toBe(0);
    const created = lastJson();
    expect(created.limits).toEqual({ rpm: 5, tpm: 2000, daily_credits: 1.5, monthly_credits: 20, models: ['covalid-1.0', 'llama3.2'], expires: '2031-06-01T00:00:00.000Z' });
    expect(cli.store.authenticateClient(created.client_key, created.client_secret)).toMatchObject({
      limits: { key: { rpm: 5, tpm: 2000, dailyMicro: 1_500_000, monthlyMicro: 20_000_000 } },
      allowedModels: ['covalid-1.0', 'llama3.2'],
      expiresAt: '2031-06-01T00:00:00.000Z',
    });
    expect(run('keys', 'create', '--name', 'plain')).toBe(0);
    expect(cli.out[cli.out.length - 1]).not.toMatch(/limits/);
  });

  test('bad limit values are usage errors (exit 2) and create nothing', () => {
    expect(run('keys', 'create', '--name', 'x', '--rpm', '0')).toBe(2);
    expect(run('keys', 'create', '--name', 'x', '--expires', 'next tuesday')).toBe(2);
    expect(run('keys', 'create', '--name', 'x', '--daily-credits', 'lots')).toBe(2);
    expect(cli.err.join('\n')).toMatch(/--rpm must be a positive integer[\s\S]*--expires must be an ISO time[\s\S]*--daily-credits must be a number/);
    expect(cli.store.listKeys()).toHaveLength(0);
  });

  test('orgs set changes an organisation\'s limits and balance; "none" removes a limit', () => {
    run('keys', 'create', '--name', 'a', '--org', 'family', '--json');
    const { client_key, client_secret } = lastJson();
    expect(run('orgs', 'set', 'family', '--rpm', '30', '--tpm', '5000', '--credits', '10', '--daily-credits', '2', '--monthly-credits', '40', '--json')).toBe(0);
    expect(lastJson()).toEqual({ org: 'family', credits: 10, rpm: 30, tpm: 5000, daily_credits: 2, monthly_credits: 40 });
    expect(cli.store.authenticateClient(client_key, client_secret)?.limits?.org).toEqual({ rpm: 30, tpm: 5000, dailyMicro: 2_000_000, monthlyMicro: 40_000_000 });
    expect(cli.store.getOrgByName('family')?.balanceMicro).toBe(10_000_000);
    expect(run('orgs', 'set', 'family', '--rpm', 'none')).toBe(0);
    expect(cli.out[cli.out.length - 1]).toBe('family: rpm none.');
    expect(cli.store.authenticateClient(client_key, client_secret)?.limits?.org.rpm).toBeNull();
    expect(run('orgs', 'set', 'nobody', '--rpm', '1')).toBe(1);
    expect(run('orgs', 'set', 'family')).toBe(2);
  });

  describe('usage', () => {
    let alice: Principal;
    let bob: Principal;
    let bobKey: string;
    const record = (p: Principal, model: string | null, cost: number, status = 200, errorCode: string | null = null): void =>
      cli.store.recordUsage({ requestId: `r${Math.random()}`, route: 'covalid.chat', principal: p, model, promptTokens: 10, completionTokens: status === 200 ? 5 : 0, costMicro: cost, status, errorCode, latencyMs: 42 } satisfies UsageRecord);

    beforeEach(() => {
      const a = cli.store.createKey({ name: 'alice', orgName: 'home' });
      const b = cli.store.createKey({ name: 'bob', orgName: 'work' });
      bobKey = b.clientKey;
      alice = cli.store.authenticateClient(a.clientKey, a.clientSecret) as Principal;
      bob = cli.store.authenticateClient(b.clientKey, b.clientSecret) as Principal;
      record(alice, 'covalid-1.0', 1_500);
      record(alice, 'covalid-1.0', 2_500);
      record(alice, 'qwen3:8b', 0);
      record(bob, 'covalid-1.0', 1_000);
      record(bob, 'covalid-1.0', 0, 429, 'rate_limited');
    });

    test('--json: every row with its fields, and exact totals per model', () => {
      expect(run('usage', '--json')).toBe(0);
      const report = lastJson();
      expect(report.rows).toHaveLength(5);
      expect(report.rows[0]).toEqual({
        time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
        org: 'home',
        key: alice.clientKey,
        model: 'covalid-1.0',
        prompt_tokens: 10,
        completion_tokens: 5,
        cost: 0.0015,
        status: 200,
        error: null,
        latency_ms: 42,
      });
      expect(report.rows[4]).toMatchObject({ org: 'work', status: 429, error: 'rate_limited', cost: 0 });
      expect(report.totals).toEqual([
        { model: 'covalid-1.0', requests: 4, prompt_tokens: 40, completion_tokens: 15, cost: 0.005 },
        { model: 'qwen3:8b', requests: 1, prompt_tokens: 10, completion_tokens: 5, cost: 0 },
      ]);
    });

    test('--org, --key and --since filter', () => {
      run('usage', '--org', 'home', '--json');
      expect(lastJson().rows.map((r: { org: string }) => r.org)).toEqual(['home', 'home', 'home']);
      run('usage', '--key', bobKey, '--json');
      expect(lastJson().totals).toEqual([{ model: 'covalid-1.0', requests: 2, prompt_tokens: 20, completion_tokens: 5, cost: 0.001 }]);
      run('usage', '--since', '2999-01-01', '--json');
      expect(lastJson()).toEqual({ rows: [], totals: [] });
      run('usage', '--since', '1h', '--json');
      expect(lastJson().rows).toHaveLength(5);
      expect(run('usage', '--since', 'yesterday-ish')).toBe(2);
      expect(run('usage', '--key', 'ck_nope')).toBe(1);
      expect(run('usage', '--org', 'nowhere')).toBe(1);
    });

    test('the table: a header line, one line per row, then totals per model', () => {
      expect(run('usage', '--org', 'work')).toBe(0);
      const lines = (cli.out[cli.out.length - 1] as string).split('\n');
      expect(lines[0]).toMatch(/^time\s+org\s+key\s+model\s+prompt_tokens\s+completion_tokens\s+cost\s+status\s+error\s+latency_ms$/);
      expect(lines[1]).toMatch(/^-+\s+-+/);
      expect(lines[2]).toMatch(new RegExp(`work\\s+${bob.clientKey}\\s+covalid-1\\.0\\s+10\\s+5\\s+0\\.001\\s+200\\s+-\\s+42$`));
      expect(lines[3]).toMatch(/work .* 429\s+rate_limited\s+42$/);
      expect(lines[5]).toBe('Totals per model');
      expect(lines[6]).toMatch(/^model\s+requests\s+prompt_tokens\s+completion_tokens\s+cost$/);
      expect(lines[8]).toMatch(/^covalid-1\.0\s+2\s+20\s+5\s+0\.001$/);
      expect(lines).toHaveLength(9);
    });
  });
});
