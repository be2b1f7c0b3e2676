/**
 * `GET /health`: the gateway's state and every Ollama host — whether it answers now and its version
 * (a live probe), and the pool's view: state (up / cooling / down), models, requests in flight, and
 * the models Ollama failed to run there (its own 500 before the first token) and has not run since.
 * `GET /ready`: 503 while no host is usable (for load balancers and orchestrators), else 200.
 */
import { Router } from 'express';
import type { Services } from './services';

export function healthRouter(services: Services): Router {
  const router = Router();
  router.get('/health', async (_req, res) => {
    const pool = services.pool.status();
    const backends = await Promise.all(
      services.pool.backends.map(async (backend, i) => {
        const host = pool[i];
        const view = {
          state: host?.state ?? 'down',
          models: host?.models ?? [],
          in_flight: host?.inFlight ?? 0,
          // A model Ollama fails to run here shows even while the host stays `up` (lib/backends/pool.ts).
          // Not Ollama's message: /health answers anyone, and a message such as "error parsing tool call"
          // can quote what the model generated for someone else. The log has it.
          failing_models: (host?.failingModels ?? []).map((f) => ({
            model: f.model,
            failures: f.count,
            last_failed_at: new Date(f.at).toISOString(),
          })),
        };
        try {
          const version = await backend.version(AbortSignal.timeout(2_000));
          return { url: backend.url, reachable: true, version, ...view };
        } catch (err) {
          return { url: backend.url, reachable: false, error: err instanceof Error ? err.message : String(err), ...view };
        }
      }),
    );
    const status = backends.some((b) => b.reachable) ? 'ok' : 'degraded';
    res.json({ status, uptime_s: Math.round(process.uptime()), queue_depth: services.pool.queueDepth, backends });
  });

  router.get('/ready', async (_req, res) => {
    await services.pool.models(); // refreshes stale lists and probes hosts whose cool-down is over
    const ready = services.pool.usable;
    res.status(ready ? 200 : 503).json({ ready, backends: services.pool.status().map((h) => ({ url: h.url, state: h.state })) });
  });
  return router;
}
