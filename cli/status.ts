/**
 * What a followed session is doing between its events: a retry becomes one
 * line (what failed, which attempt, when the next one is), and long work (a
 * command, a sandbox start with a restore, a model call) says it is still
 * running, at 5 s and then at each doubling; work that reports progress in its
 * heartbeat (a snapshot's upload, a restore) says how far it is, every 5 s while
 * that changes. The events themselves are printed
 * by the progress printer; this fills the silence between them.
 */
import type { ActivityInFlight, KeelClient } from '../client';
import { formatProgress } from '../common/progress';
import { termSafe } from './terminal';

/** How often a change of reported progress is told. */
const PROGRESS_EVERY_MS = 5_000;

/** How an activity reads in a status line. */
const LABELS: Record<string, string> = {
  callModel: 'model call',
  runTool: 'tool call',
  provisionSandbox: 'sandbox start',
  snapshotSandbox: 'snapshot',
  destroySandbox: 'sandbox removal',
  readOutput: 'reading a finished command’s output',
  describeRuntime: 'runtime check',
};

const label = (a: ActivityInFlight): string => LABELS[a.activity] ?? a.activity;
const seconds = (ms: number): string => `${Math.max(0, Math.round(ms / 1000))} s`;

/**
 * The lines to print for one look at the activities in flight. `seen` remembers what was said,
 * so each retry attempt is told once and long work only at 5, 10, 20, 40 … seconds.
 */
export function statusLines(activities: ActivityInFlight[], seen: Map<string, number>, now: number): string[] {
  const lines: string[] = [];
  for (const a of activities) {
    if (a.lastFailure && a.attempt > 1 && !a.running) {
      const key = `${a.activityId}#${a.attempt}:retry`;
      if (seen.has(key)) continue;
      seen.set(key, now);
      const of = a.maximumAttempts ? ` of ${a.maximumAttempts}` : '';
      const next = a.nextAttemptAt ? `next attempt in ${seconds(a.nextAttemptAt.getTime() - now)}` : 'retrying';
      lines.push(`  ↻ ${label(a)} failed (attempt ${a.attempt - 1}${of}): ${oneLine(a.lastFailure)}; ${next}`);
      continue;
    }
    if (!a.running || !a.startedAt) continue;
    const elapsed = now - a.startedAt.getTime();
    const key = `${a.activityId}#${a.attempt}:slow`;
    const told = seen.get(key) ?? 2_500;
    const attempt = a.attempt > 1 ? `, attempt ${a.attempt}` : '';
    const progress = a.progress ? formatProgress(a.progress) : undefined;
    if (progress && elapsed >= PROGRESS_EVERY_MS) {
      // Told at most every 5 s, and only when it moved.
      const toldAt = seen.get(`${key}:at`) ?? -Infinity;
      if (elapsed - toldAt < PROGRESS_EVERY_MS || seen.has(`${key}:${progress}`)) continue;
      seen.set(`${key}:at`, elapsed).set(`${key}:${progress}`, elapsed).set(key, elapsed);
      lines.push(`  … ${label(a)}: ${termSafe(progress)} (${seconds(elapsed)}${attempt})`);
      continue;
    }
    if (elapsed < told * 2) continue;
    seen.set(key, elapsed);
    lines.push(`  … ${label(a)} still running (${seconds(elapsed)}${attempt})`);
  }
  return lines;
}

/** One line, terminal-safe, at most 200 characters: an SDK error message can be long and multi-line. */
function oneLine(text: string): string {
  const first = termSafe(text.split('\n')[0] ?? '').trim();
  return first.length > 200 ? `${first.slice(0, 199)}…` : first;
}

/**
 * Look at the session's activities every `intervalMs` and print what {@link statusLines} says,
 * until the returned function is called. A failed look (the session just ended) is ignored.
 */
export function watchActivities(client: KeelClient, sessionId: string, write: (line: string) => void, intervalMs = 1000): () => void {
  const seen = new Map<string, number>();
  let stopped = false;
  const tick = async (): Promise<void> => {
    if (stopped) return;
    try {
      const lines = statusLines(await client.activities(sessionId), seen, Date.now());
      if (!stopped) for (const line of lines) write(line);
    } catch {
      // Ended or not reachable for a moment: the follower reports the end.
    }
    if (!stopped) timer = setTimeout(() => void tick(), intervalMs);
  };
  let timer = setTimeout(() => void tick(), intervalMs);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
