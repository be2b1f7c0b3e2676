/**
 * An Ollama behind a reverse proxy under a path (`OLLAMA_HOST=https://proxy/ollama`): every call —
 * generations as well as models and version — goes to that path.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { startHarness, postJson, type Harness } from './support/harness';
import { startOllamaDouble, type OllamaDouble } from './support/ollama-double';

describe('Ollama under a path prefix', () => {
  let double: OllamaDouble;
  let proxy: http.Server;
  let h: Harness;
  const seen: string[] = [];

  beforeAll(async () => {
    double = await startOllamaDouble();
    const upstream = new URL(double.url);
    // Strips `/ollama` and forwards; anything else is a 404, as a real proxy would answer.
    proxy = http.createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      if (!req.url?.startsWith('/ollama/')) return void res.writeHead(404).end('not here');
      const forward = http.request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url.slice('/ollama'.length), headers: req.headers }, (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      });
      req.pipe(forward);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', () => resolve()));
    const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}/ollama`;
    h = await startHarness({ env: { OLLAMA_HOST: proxyUrl } });
  });
  afterAll(async () => {
    await h.close();
    await new Promise<void>((resolve) => proxy.close(() => resolve()));
    await double.close();
  });

  test('a Covalid chat reaches Ollama through the prefix, and so do the model-list calls', async () => {
    const key = h.createKey();
    const res = await postJson(`${h.url}/api/chat.php`, { prompt: 'through the proxy' }, { 'X-Client-Key': key.clientKey, 'X-Client-Secret': key.clientSecret });
    expect(res.status).toBe(200);
    expect(res.body.response).toBe('Echo: through the proxy');
    expect(seen).toContain('POST /ollama/api/generate');
    expect(seen).toContain('GET /ollama/api/tags');
    expect(seen.filter((line) => !line.includes(' /ollama/'))).toEqual([]);
    expect(double.generations().map((g) => g.path)).toEqual(['/api/generate']);
  });
});
