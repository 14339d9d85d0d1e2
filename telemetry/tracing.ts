/**
 * OpenTelemetry traces, exported with OTLP/HTTP (JSON) when an endpoint is configured, else
 * nothing at all: no provider is registered, so `@opentelemetry/api` hands out no-op spans and the
 * Temporal interceptors are not installed.
 *
 * One trace per session start: the client's `StartWorkflow` span (Temporal's client interceptor)
 * → `RunWorkflow` and `StartActivity` spans made in the workflow (Temporal's workflow interceptors,
 * bundled into the workflow code and exported through a sink, so workflows stay deterministic)
 * → `RunActivity` on the worker → Keel's own host-side spans around each executor call,
 * snapshot and restore (see `inSpan` in ./spans).
 */
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { Resource } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { OpenTelemetryWorkflowClientInterceptor } from '@temporalio/interceptors-opentelemetry/lib/client';
import type { WorkflowClientInterceptor } from '@temporalio/client';

export interface TracingConfig {
  /** Full OTLP/HTTP traces URL (`.../v1/traces`). */
  url: string;
  /** `service.name` on every span. */
  serviceName: string;
}

/** A running trace pipeline; `shutdown` flushes what is buffered. */
export interface Tracing {
  processor: SpanProcessor;
  resource: Resource;
  shutdown(): Promise<void>;
}

let current: Tracing | undefined;

/**
 * Register the process's tracer provider (once; later calls return the first). Spans are
 * batched and posted to `config.url`; `OTEL_EXPORTER_OTLP_HEADERS` is read by the exporter itself.
 */
export function startTracing(config: TracingConfig): Tracing {
  if (current) return current;
  const resource = new Resource({ 'service.name': config.serviceName });
  const processor = new BatchSpanProcessor(new OTLPTraceExporter({ url: config.url }), { scheduledDelayMillis: 1000 });
  const provider = new BasicTracerProvider({ resource, spanProcessors: [processor] });
  // Without a context manager no span would have a parent inside an activity.
  provider.register({ contextManager: new AsyncLocalStorageContextManager().enable() });
  current = {
    processor,
    resource,
    async shutdown() {
      await provider.shutdown();
      trace.disable();
      context.disable();
      current = undefined;
    },
  };
  return current;
}

/** Flush and stop the process's tracing, if it was started. */
export async function stopTracing(): Promise<void> {
  await current?.shutdown();
}

/** Whether {@link startTracing} has run in this process. */
export function tracingOn(): boolean {
  return current !== undefined;
}

/** Client interceptors that start a trace per workflow start, signal and update; none when tracing is off. */
export function clientTracingInterceptors(): WorkflowClientInterceptor[] {
  return current ? [new OpenTelemetryWorkflowClientInterceptor()] : [];
}
