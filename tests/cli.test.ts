/**
 * The admin CLI against a real database file.
 */
import { useCliFixture } from './support/cli-fixture';

describe('admin CLI', () => {
  const cli = useCliFixture();
  const run = cli.run;
  const lastJson = () => cli.lastJson();


  test('options may come before the command: an option\'s value is not taken for a command word', () => {
    expect(run('keys', 'create', '--name', 'first', '--json')).toBe(0);
    // The fixture's store is used whatever --db says; what matters is that `keys list` is found.
    expect(run('--db', '/nonexistent/elsewhere.db', '--json', 'keys', 'list')).toBe(0);
    expect((lastJson() as Array<{ name: string }>).map((k) => k.name)).toContain('first');
  });

  test('keys create prints the credentials once; they authenticate; the org gets the credits', () => {
    expect(run('keys', 'create', '--name', 'family-laptop', '--credits', '12.5', '--json')).toBe(0);
    const created = lastJson();
    expect(created).toEqual({
      client_key: expect.stringMatching(/^ck_/),
      client_secret: expect.stringMatching(/^cs_[A-Za-z0-9_-]{43}$/),
      api_key: expect.stringMatching(/^sk-og-/),
      org: 'family-laptop',
    });
    expect(cli.store.authenticateClient(created.client_key, created.client_secret)?.keyName).toBe('family-laptop');
    expect(cli.store.authenticateApiKey(created.api_key)?.orgName).toBe('family-laptop');
    expect(created.api_key).not.toContain(created.client_key.slice(3));
    expect(run('credits', 'show', 'family-laptop', '--json')).toBe(0);
    expect(lastJson()).toEqual({ org: 'family-laptop', credits: 12.5 });
  });

  test('keys in one org share it; an org made without --credits is unlimited; credits add tops up', () => {
    run('keys', 'create', '--name', 'a', '--org', 'team');
    run('keys', 'create', '--name', 'b', '--org', 'team');
    expect(run('credits', 'show', 'team', '--json')).toBe(0);
    expect(lastJson()).toEqual({ org: 'team', credits: null });
    expect(run('credits', 'add', 'team', '5')).toBe(0);
    expect(run('credits', 'add', 'team', '0.25', '--json')).toBe(0);
    expect(lastJson()).toEqual({ org: 'team', credits: 5.25 });
    expect(run('keys', 'list', '--json')).toBe(0);
    const keys = lastJson();
    expect(keys.map((k: { name: string; org: string }) => [k.name, k.org])).toEqual([['a', 'team'], ['b', 'team']]);
    expect(JSON.stringify(keys)).not.toMatch(/cs_/);
  });

  test('keys revoke refuses the key afterwards; a second revoke fails', () => {
    run('keys', 'create', '--name', 'x', '--json');
    const { client_key, client_secret } = lastJson();
    expect(run('keys', 'revoke', client_key)).toBe(0);
    expect(cli.store.authenticateClient(client_key, client_secret)).toBeUndefined();
    expect(run('keys', 'revoke', client_key)).toBe(1);
    expect(cli.err.join('\n')).toMatch(/no active key/);
  });

  test('models set / list / remove, with prices kept exactly', () => {
    expect(run('models', 'set', 'house-model', '--ollama', 'llama3.2:3b', '--input-cost', '0.002', '--output-cost', '0.0030000', '--json')).toBe(0);
    expect(lastJson()).toMatchObject({ name: 'house-model', ollama: 'llama3.2:3b', category: 'chat', input_cost: 0.002, output_cost: 0.003 });
    expect(cli.store.getModel('house-model')).toMatchObject({ inputMicroPer1k: 2000, outputMicroPer1k: 3000 });
    expect(run('models', 'list')).toBe(0);
    expect(cli.out[cli.out.length - 1]).toMatch(/house-model\s+llama3\.2:3b\s+chat\s+0\.002\s+0\.003/);
    expect(run('models', 'remove', 'house-model')).toBe(0);
    expect(cli.store.getModel('house-model')).toBeUndefined();
    expect(run('models', 'set', 'vision', '--ollama', 'llama3.2-vision', '--image-tokens', '1600', '--json')).toBe(0);
    expect(lastJson()).toMatchObject({ name: 'vision', image_tokens: 1600 });
    expect(cli.store.getModel('vision')?.imageTokens).toBe(1600);
    expect(run('models', 'set', 'vision', '--ollama', 'llama3.2-vision', '--json')).toBe(0); // unset: IMAGE_TOKENS again
    expect(lastJson()).toMatchObject({ name: 'vision', image_tokens: null });
  });

  test('the Covalid model names exist on a new database', () => {
    expect(run('models', 'list', '--json')).toBe(0);
    expect(lastJson().map((m: { name: string }) => m.name)).toEqual(['covalid-1.0', 'covalid-2.0']);
  });

  test.each([
    [['keys', 'create'], /--name is required/],
    [['keys', 'create', '--name', 'x', '--credits', 'lots'], /--credits must be a number/],
    [['keys', 'create', '--name', 'x', '--credits', '0.0000001'], /--credits has more than 6 decimals/],
    [['models', 'set', 'm', '--ollama', 'x', '--input-cost', '0.0010005'], /--input-cost has more than 6 decimals/],
    [['models', 'set', 'm', '--ollama', 'x', '--max-output-tokens', '99999999999999999999'], /--max-output-tokens must be a positive integer up to 100,000,000/],
    [['models', 'set', 'm', '--ollama', 'x', '--image-tokens', 'lots'], /--image-tokens must be a positive integer/],
    [['keys', 'create', '--name', 'x', '--rpm', '1e3'], /--rpm must be a positive integer/],
    [['keys', 'create', '--name', 'x', '--tpm', '99999999999999999999'], /--tpm must be a positive integer up to 1,000,000,000,000/],
    [['models', 'set', 'm', '--ollama', 'x', '--category', 'vision'], /--category must be one of/],
    [['credits', 'add', 'team'], /<org> is required|<amount> is required|no organisation/],
    [['frobnicate'], /Usage:/],
    [['keys', 'create', '--name', 'x', '--bogus'], /Unknown option/],
  ])('bad input %j is refused with a message', (argv, message) => {
    expect(run(...argv)).not.toBe(0);
    expect(cli.err.join('\n')).toMatch(message);
  });
});
