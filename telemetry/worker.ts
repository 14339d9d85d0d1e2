/** Telemetry for a worker process: Temporal's tracing interceptors and sink, and the `/metrics` endpoint. */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { makeWorkflowExporter, OpenTelemetryActivityInboundInterceptor, OpenTelemetryActivityOutboundInterceptor } from '@temporalio/interceptors-opentelemetry/lib/worker';
import type { InjectedSinks, WorkerInterceptors } from '@temporalio/worker';
import { registry } from './metrics';
import type { Tracing } from './tracing';

/**
 * The workflow interceptor module, for `bundleWorkflowCode({ workflowInterceptorModules })`. It makes
 * spans from workflow-time and hands them to the `exporter` sink; it adds headers to scheduled
 * activities but no command, so it changes no workflow's command sequence.
 */
export const WORKFLOW_TRACING_MODULE = require.resolve('@temporalio/interceptors-opentelemetry/lib/workflow-interceptors');

/** Worker interceptors (`extra` first, e.g. a test's fault injector) plus tracing ones when `tracing` is set. */
export function withTracing(extra: WorkerInterceptors | undefined, tracing: Tracing | undefined): WorkerInterceptors | undefined {
  if (!tracing) return extra;
  return {
    ...extra,
    activity: [
      ...(extra?.activity ?? []),
      (ctx) => ({ inbound: new OpenTelemetryActivityInboundInterceptor(ctx), outbound: new OpenTelemetryActivityOutboundInterceptor(ctx) }),
    ],
  };
}

/** The sink the workflow interceptors export through (a worker that runs workflows needs it when tracing). */
export function tracingSinks(tracing: Tracing | undefined): InjectedSinks<Record<string, never>> | undefined {
  if (!tracing) return undefined;
  return { exporter: makeWorkflowExporter(tracing.processor, tracing.resource) } as unknown as InjectedSinks<Record<string, never>>;
}

/** Serve the registry at `GET /metrics` on `port` (0: any free one), all interfaces. */
export async function serveMetrics(port: number, host = '0.0.0.0'): Promise<{ port: number; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics here\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${(err as Error).message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
