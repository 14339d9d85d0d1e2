/** `keel diff <id> --step N`: prints what step N did to the sandbox's files (see inspect/step-diff.ts). */
import type { BlobReader } from '../blobs';
import type { EventRow } from '../common/events';
import type { ManifestEntry } from '../common/manifest';
import { stepDiff, type StepDiff } from '../inspect/step-diff';
import { safeJson, termSafe } from './terminal';

export interface DiffOptions {
  json?: boolean;
  /** Where lines go. @default console.log */
  print?: (line: string) => void;
  /** The session's events (from the database or a bundle). */
  events: readonly EventRow[];
  blobs: BlobReader;
}

function describe(e: ManifestEntry): string {
  if (e.type === 'dir') return `${e.path}/`;
  if (e.type === 'symlink') return `${e.path} -> ${e.target}`;
  return `${e.path} (${e.size} B)`;
}

/** Compute and print the diff of one step. Throws when the session has no events or the blob store lacks a snapshot. */
export async function runDiff(sessionId: string, step: number, opts: DiffOptions): Promise<StepDiff> {
  const print = opts.print ?? ((line: string) => console.log(opts.json ? line : termSafe(line)));
  if (opts.events.length === 0) throw new Error(`no events for session ${sessionId}`);
  const result = await stepDiff({ sessionId, step, events: opts.events, blobs: opts.blobs });
  if (opts.json) {
    print(safeJson(result));
    return result;
  }
  if (!result.after) {
    print(`step ${step} of ${sessionId} changed no files (no snapshot recorded at that step)`);
    return result;
  }
  print(`step ${step} of ${sessionId}: snapshot ${result.after.slice(0, 12)} vs ${result.before ? result.before.slice(0, 12) : 'empty sandbox'}`);
  print(`  ${result.added.length} added, ${result.modified.length} modified, ${result.removed.length} removed`);
  for (const e of result.added) print(`  A ${describe(e)}`);
  for (const { before: x, after: y } of result.modified) {
    const what =
      x.type !== y.type
        ? `${x.type} -> ${y.type}`
        : x.type === 'file' && y.type === 'file'
          ? x.sha === y.sha
            ? `mode ${x.mode.toString(8)} -> ${y.mode.toString(8)}`
            : `${x.size} B -> ${y.size} B`
          : 'changed';
    print(`  M ${y.path} (${what})`);
  }
  for (const e of result.removed) print(`  D ${describe(e)}`);
  for (const text of Object.values(result.textDiffs)) print(`\n${text.trimEnd()}`);
  return result;
}
