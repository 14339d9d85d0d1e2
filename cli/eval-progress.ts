/**
 * `keel eval`'s progress while it runs: how many of its rollouts (child sessions, ids
 * `<evalId>.<task>.<n>`) have ended, and how many run, read from the session index every few
 * seconds and told when it changes. The eval workflow itself is not asked: its history holds
 * the children, and the index already answers without touching it.
 */
import type { Sql } from '../store';

export interface RolloutCounts {
  /** Rollout sessions that have started (recorded their first event). */
  started: number;
  ended: number;
}

/** The eval's rollout sessions, started and ended. */
export async function rolloutCounts(sql: Sql, evalId: string): Promise<RolloutCounts> {
  const [row] = await sql<RolloutCounts[]>`
    select count(*)::int as started, count(ended_at)::int as ended from sessions where starts_with(id, ${`${evalId}.`})`;
  return row ?? { started: 0, ended: 0 };
}

/** The line for `counts`, or undefined when it says nothing new since `last`. */
export function rolloutLine(total: number, counts: RolloutCounts, last: RolloutCounts | undefined, elapsedMs: number): string | undefined {
  if (last && last.started === counts.started && last.ended === counts.ended) return undefined;
  const running = counts.started - counts.ended;
  return `  … ${counts.ended} of ${total} rollouts done, ${running} running (${Math.round(elapsedMs / 1000)} s)`;
}

/** Print {@link rolloutLine} every `intervalMs` while it changes, until the returned function is called. Read failures are skipped. */
export function watchRollouts(sql: Sql, evalId: string, total: number, write: (line: string) => void, intervalMs = 2000): () => void {
  const t0 = Date.now();
  let last: RolloutCounts | undefined;
  let stopped = false;
  let timer: ReturnType<typeof setTimeout>;
  const tick = async (): Promise<void> => {
    try {
      const counts = await rolloutCounts(sql, evalId);
      const line = stopped ? undefined : rolloutLine(total, counts, last, Date.now() - t0);
      last = counts;
      if (line && counts.started > 0) write(line);
    } catch {
      // The index is not reachable for a moment: the eval goes on, so does waiting for it.
    }
    if (!stopped) timer = setTimeout(() => void tick(), intervalMs);
  };
  timer = setTimeout(() => void tick(), intervalMs);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
