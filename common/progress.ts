/**
 * Progress of long work (a snapshot's upload, a restore, an image build, an eval), as counts of
 * what is done of a known total. Activities put it in their heartbeat details, so a client
 * reading the workflow's pending activities (`keel run`'s status lines) can show it. Pure code.
 */
export interface Progress {
  /** What is being done: `uploading`, `restoring`, … */
  phase: string;
  /** Items (files, steps, rollouts) done, of `total`. */
  done: number;
  total: number;
  /** What the items are. @default 'files' */
  unit?: string;
  bytesDone?: number;
  bytesTotal?: number;
}

const MB = 1024 * 1024;
const mb = (n: number): string => (n >= 10 * MB ? `${Math.round(n / MB)} MB` : `${(n / MB).toFixed(1)} MB`);

/** `uploading 120 of 500 files, 12.0 of 40.0 MB` */
export function formatProgress(p: Progress): string {
  if (p.total === 0) return p.phase;
  const bytes = p.bytesTotal !== undefined ? `, ${mb(p.bytesDone ?? 0).replace(/ MB$/, '')} of ${mb(p.bytesTotal)}` : '';
  return `${p.phase} ${p.done} of ${p.total} ${p.unit ?? 'files'}${bytes}`;
}

/** A progress value read back from untrusted details (heartbeats), or undefined. */
export function progressOf(v: unknown): Progress | undefined {
  if (!v || typeof v !== 'object') return undefined;
  const p = (v as { progress?: unknown }).progress ?? v;
  if (!p || typeof p !== 'object') return undefined;
  const r = p as Record<string, unknown>;
  const n = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x) && x >= 0;
  if (typeof r.phase !== 'string' || !n(r.done) || !n(r.total)) return undefined;
  return {
    phase: r.phase.slice(0, 40),
    done: r.done,
    total: r.total,
    ...(typeof r.unit === 'string' ? { unit: r.unit.slice(0, 20) } : {}),
    ...(n(r.bytesDone) ? { bytesDone: r.bytesDone } : {}),
    ...(n(r.bytesTotal) ? { bytesTotal: r.bytesTotal } : {}),
  };
}
