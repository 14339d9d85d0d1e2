/**
 * Keel's Prometheus metrics (prom-client), one registry per process. Activities record into
 * it; `keel serve` exposes it at `/metrics`, `keel worker` on `KEEL_METRICS_PORT`. Gauges that
 * describe shared state (sessions by status, live sandboxes) are read when scraped, from
 * sources the process registers with {@link watchSessions} / {@link watchSandboxes}.
 *
 * Labels stay low-cardinality: tool, model and outcome names, never session ids.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

export const registry = new Registry();
collectDefaultMetrics({ register: registry });

const registers = [registry];
/** Seconds: a tool call is milliseconds to minutes, a model call seconds. */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

export const toolCallSeconds = new Histogram({
  name: 'keel_tool_call_duration_seconds',
  help: 'Tool calls run in a sandbox, from the request to the executor to its answer (host side).',
  labelNames: ['tool', 'outcome'] as const,
  buckets: LATENCY_BUCKETS,
  registers,
});

export const modelCallSeconds = new Histogram({
  name: 'keel_model_call_duration_seconds',
  help: 'Model calls, request to response.',
  labelNames: ['provider', 'model', 'outcome'] as const,
  buckets: LATENCY_BUCKETS,
  registers,
});

export const modelTokens = new Counter({
  name: 'keel_model_tokens_total',
  help: 'Tokens used by model calls, by kind (input, output).',
  labelNames: ['provider', 'model', 'kind'] as const,
  registers,
});

export const modelCostUsd = new Counter({
  name: 'keel_model_cost_usd_total',
  help: 'What model calls cost, in US dollars, from the price table (models with no known price count 0); the spend USD budgets limit.',
  labelNames: ['provider', 'model'] as const,
  registers,
});

export const snapshotSeconds = new Histogram({
  name: 'keel_snapshot_duration_seconds',
  help: 'Snapshots taken (walk, hash, upload), including those that found nothing changed.',
  labelNames: ['outcome'] as const,
  buckets: LATENCY_BUCKETS,
  registers,
});

export const snapshotBytes = new Counter({
  name: 'keel_snapshot_bytes_total',
  help: 'Bytes of snapshots: changed (added or modified files) and uploaded (new to the blob store, after deduplication).',
  labelNames: ['kind'] as const,
  registers,
});

export const restoreSeconds = new Histogram({
  name: 'keel_restore_duration_seconds',
  help: 'Sandboxes restored from a snapshot.',
  labelNames: ['outcome'] as const,
  buckets: LATENCY_BUCKETS,
  registers,
});

export const restoreBytes = new Counter({
  name: 'keel_restore_bytes_total',
  help: 'Bytes of files written into sandboxes by restores.',
  registers,
});

/** `ok` or the error's class name, so a dashboard can tell failures apart without a label per message. */
export function outcomeOf(err: unknown): string {
  if (err === undefined) return 'ok';
  const type = (err as { type?: unknown }).type;
  if (typeof type === 'string' && type) return type;
  return err instanceof Error ? err.name : 'error';
}

/** Time `fn` into `histogram` with `labels` plus `outcome`. */
export async function timed<T, L extends string>(
  histogram: Histogram<L | 'outcome'>,
  labels: Partial<Record<L, string>>,
  fn: () => Promise<T>,
  outcome: (value: T) => string = () => 'ok',
): Promise<T> {
  const end = histogram.startTimer(labels as Partial<Record<L | 'outcome', string>>);
  try {
    const value = await fn();
    end({ outcome: outcome(value) } as Partial<Record<L | 'outcome', string>>);
    return value;
  } catch (err) {
    end({ outcome: outcomeOf(err) } as Partial<Record<L | 'outcome', string>>);
    throw err;
  }
}

type Source<T> = () => Promise<T>;
let sessionSource: Source<Array<{ status: string; count: number }>> | undefined;
let sandboxSource: Source<Array<{ state: string; kind: string }>> | undefined;

new Gauge({
  name: 'keel_sessions',
  help: 'Sessions in the session index, by status (read from Postgres when scraped; every process that exposes it reads the same table).',
  labelNames: ['status'] as const,
  registers,
  async collect() {
    if (!sessionSource) return;
    this.reset();
    for (const { status, count } of await sessionSource()) this.set({ status }, count);
  },
});

new Gauge({
  name: 'keel_sandboxes_live',
  help: "Sandbox containers on this process's Docker host, by Docker state and kind (session, or pool for unclaimed warm containers).",
  labelNames: ['state', 'kind'] as const,
  registers,
  async collect() {
    if (!sandboxSource) return;
    this.reset();
    const counts = new Map<string, { state: string; kind: string; n: number }>();
    for (const c of await sandboxSource()) {
      const key = `${c.state}\0${c.kind}`;
      const entry = counts.get(key) ?? { ...c, n: 0 };
      entry.n++;
      counts.set(key, entry);
    }
    for (const { state, kind, n } of counts.values()) this.set({ state, kind }, n);
  },
});

/** Where `keel_sessions` reads its counts (a session worker or `keel serve`: Postgres). */
export function watchSessions(source: Source<Array<{ status: string; count: number }>>): void {
  sessionSource = source;
}

/** Where `keel_sandboxes_live` reads its containers (a sandbox-host worker: its Docker host). */
export function watchSandboxes(source: Source<Array<{ state: string; kind: string }>>): void {
  sandboxSource = source;
}
