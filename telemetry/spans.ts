/** Keel's own spans. Only `@opentelemetry/api`: with no provider registered (tracing off) they are no-ops. */
import { SpanStatusCode, trace, type Attributes, type Span } from '@opentelemetry/api';

/** The tracer Keel's own spans come from. */
const TRACER = 'keel';

/**
 * Run `fn` in a span (a child of the active one, e.g. the activity's), recording a thrown error.
 * With tracing off this costs a no-op span.
 */
export async function inSpan<T>(name: string, attributes: Attributes, fn: (span: Span) => Promise<T>): Promise<T> {
  return trace.getTracer(TRACER).startActiveSpan(name, { attributes }, async (span) => {
    try {
      return await fn(span);
    } catch (err) {
      span.recordException(err as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
      throw err;
    } finally {
      span.end();
    }
  });
}
