/**
 * `GET /health`: the gateway's state and, for each Ollama host, whether it answers and its version.
 */
import { Router } from 'express';
import type { Services } from './services';

export function healthRouter(services: Services): Router {
  const router = Router();
  router.get('/health', async (_req, res) => {
    const backends = await Promise.all(
      services.pool.backends.map(async (backend) => {
        try {
          const version = await backend.version(AbortSignal.timeout(2_000));
          return { url: backend.url, reachable: true, version };
        } catch (err) {
          return { url: backend.url, reachable: false, error: err instanceof Error ? err.message : String(err) };
        }
      }),
    );
    const status = backends.some((b) => b.reachable) ? 'ok' : 'degraded';
    res.json({ status, uptime_s: Math.round(process.uptime()), backends });
  });
  return router;
}
