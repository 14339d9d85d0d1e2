/**
 * Progress of a `docker build`: which step of how many, from the builder's own output (the
 * legacy builder's `Step 2/5 : RUN …`, BuildKit's plain `#7 [2/5] RUN …`). A step that runs
 * quietly for a while (a long `RUN` whose command prints nothing) is told again, at 10 s and
 * each doubling, so a build never looks hung.
 */
import type { Progress } from '../common/progress';

const LEGACY = /^Step (\d+)\/(\d+) : (.*)$/;
const BUILDKIT = /^#\d+ \[(?:[^\]\s]+ )?(\d+)\/(\d+)\] (.*)$/;

/** The step a build output line starts, if it starts one. */
export function parseBuildStep(line: string): { step: number; total: number; what: string } | undefined {
  const m = LEGACY.exec(line.trim()) ?? BUILDKIT.exec(line.trim());
  if (!m) return undefined;
  return { step: Number(m[1]), total: Number(m[2]), what: (m[3] ?? '').slice(0, 80) };
}

export class BuildProgress {
  private current: { step: number; total: number; what: string; since: number; told: number } | undefined;

  /** Feed an output line at time `now`; returns the progress when the line starts a new step. */
  line(line: string, now: number): Progress | undefined {
    const s = parseBuildStep(line);
    // BuildKit repeats a step's header for its output and when it is done: only a new step counts.
    if (!s || (this.current && this.current.step === s.step && this.current.total === s.total)) return undefined;
    this.current = { ...s, since: now, told: 0 };
    return { phase: 'building step', done: s.step, total: s.total, unit: 'steps' };
  }

  /** A line to print at `now` when the current step has run quietly long enough (10 s, then each doubling). */
  quiet(now: number): string | undefined {
    const c = this.current;
    if (!c) return undefined;
    const elapsed = now - c.since;
    if (elapsed < Math.max(10_000, c.told * 2)) return undefined;
    c.told = elapsed;
    return `… step ${c.step} of ${c.total} (${c.what}) still running (${Math.round(elapsed / 1000)} s)`;
  }
}
