/**
 * Comparing a rerun of a tool call with its recording, and classifying a step.
 *
 * Compared: `ok`, `exitCode`, `error`, the whole output (fetched from the blob
 * store when stored by reference) and the snapshot after the call (its id, or
 * "no change"; only for tools the workflow snapshots after). Not compared: the
 * duration, and the snapshot's timings and upload counts.
 *
 * Normalisation ({@link NORMALISATION}): none. Outputs are compared byte for
 * byte, trailing whitespace included. The one thing removed before comparing is
 * the note the workflow appends to the last result of a turn whose extra calls it
 * dropped: the workflow wrote it, not the sandbox. Snapshot ids need none: a
 * manifest holds paths, types, modes, sizes and content hashes, no times.
 */
import { readBlob, type BlobReader } from '../blobs';
import { diffManifests, readManifest, type Manifest } from '../common/manifest';
import { SNAPSHOT_TOOLS } from '../common/tools';
import type { ToolResult } from '../common/types';

/** What is done to outputs before they are compared, in words (reports carry it). */
export const NORMALISATION = "none: outputs are compared byte for byte; only the workflow's own note on dropped tool calls is removed from recorded outputs";

/** The note session.ts appends to the last result of a turn whose extra tool calls it dropped. */
const DROPPED_CALLS_NOTE = /\n\[Keel: this turn made \d+ tool calls; [^\]]*\]$/;

/** An output as the tool produced it: without the workflow's note on dropped calls. */
export function withoutWorkflowNote(output: string): string {
  return output.replace(DROPPED_CALLS_NOTE, '');
}

/** What one execution of a call came to: what a rerun must reproduce. */
export interface Outcome {
  ok: boolean;
  exitCode?: number;
  error?: string;
  /** The whole output. */
  output: string;
  /** The snapshot after the call: its id, null when it changed no files; undefined when the tool is not snapshotted. */
  snapshot?: string | null;
}

/** The outcome of a tool result, its stored output read whole. */
export async function outcomeOf(result: ToolResult, blobs: BlobReader): Promise<Outcome> {
  const output = result.outputRef ? (await readBlob(blobs, result.outputRef.sha)).toString('utf8') : result.output;
  return {
    ok: result.ok,
    ...(result.exitCode !== undefined ? { exitCode: result.exitCode } : {}),
    ...(result.error !== undefined ? { error: result.error } : {}),
    output: withoutWorkflowNote(output),
    ...(SNAPSHOT_TOOLS.has(result.name) ? { snapshot: result.snapshot?.id ?? null } : {}),
  };
}

export type DifferenceField = 'ok' | 'exitCode' | 'error' | 'output' | 'snapshot';

/** One way a rerun's outcome differs from the recording. */
export interface Difference {
  field: DifferenceField;
  recorded: string;
  rerun: string;
  /** Output: the first lines that differ; snapshot: the files that differ. */
  detail: string[];
}

const MAX_LINE = 160;
const MAX_LINES = 3;
const MAX_FILES = 10;

const clip = (s: string): string => (s.length > MAX_LINE ? `${s.slice(0, MAX_LINE)}...` : s);
const shown = (v: unknown): string => (v === undefined ? '(none)' : typeof v === 'string' ? v : String(v));

/** The first lines that differ, as `- recorded` / `+ rerun` pairs with their line numbers. */
export function firstDifferingLines(recorded: string, rerun: string, max = MAX_LINES): string[] {
  const a = recorded.split('\n');
  const b = rerun.split('\n');
  const out: string[] = [];
  let found = 0;
  for (let i = 0; i < Math.max(a.length, b.length) && found < max; i++) {
    const [x, y] = [a[i], b[i]];
    if (x === y) continue;
    found++;
    out.push(`line ${i + 1}:`, `- ${x === undefined ? '(no line)' : JSON.stringify(clip(x))}`, `+ ${y === undefined ? '(no line)' : JSON.stringify(clip(y))}`);
  }
  if (a.length !== b.length) out.push(`${a.length} lines recorded, ${b.length} in the rerun`);
  return out;
}

/** A manifest from the store, or undefined when it is not there (an empty workspace when `id` is undefined). */
async function manifestOf(blobs: BlobReader, id: string | undefined): Promise<Manifest | undefined> {
  if (!id) return { version: 1, roots: [], entries: [] };
  return (await readManifest(blobs, id))?.manifest;
}

/** The files that differ between the snapshots the recording and the rerun ended with (undefined: an empty workspace). */
export async function snapshotDetail(blobs: BlobReader, after: { recorded?: string; rerun?: string }): Promise<string[]> {
  const [a, b] = [after.recorded, after.rerun];
  const [ma, mb] = [await manifestOf(blobs, a), await manifestOf(blobs, b)];
  if (!ma || !mb) return [`snapshot ${(ma ? b : a)?.slice(0, 12)} is not in the blob store: the files cannot be compared`];
  const d = diffManifests(ma, mb);
  const lines = [
    ...d.added.map((e) => `+ ${e.path} (only in the rerun)`),
    ...d.removed.map((e) => `- ${e.path} (only in the recording)`),
    ...d.modified.map((m) => `~ ${m.after.path}${m.before.type !== m.after.type ? ` (${m.before.type} -> ${m.after.type})` : ''}`),
  ];
  if (lines.length > MAX_FILES) return [...lines.slice(0, MAX_FILES), `and ${lines.length - MAX_FILES} more`];
  return lines;
}

const snapshotName = (s: string | null | undefined): string => (s ? s.slice(0, 12) : 'no change');

/**
 * How `rerun` differs from `recorded`; empty when it reproduces it. `before` names the snapshots each
 * started from (what "no change" means; undefined: an empty workspace).
 */
export async function compareOutcomes(recorded: Outcome, rerun: Outcome, ctx: { blobs: BlobReader; before: { recorded?: string; rerun?: string } }): Promise<Difference[]> {
  const out: Difference[] = [];
  for (const field of ['ok', 'exitCode', 'error'] as const) {
    if (recorded[field] !== rerun[field]) out.push({ field, recorded: shown(recorded[field]), rerun: shown(rerun[field]), detail: [] });
  }
  if (recorded.output !== rerun.output) {
    out.push({ field: 'output', recorded: `${recorded.output.length} characters`, rerun: `${rerun.output.length} characters`, detail: firstDifferingLines(recorded.output, rerun.output) });
  }
  if (recorded.snapshot !== undefined && rerun.snapshot !== undefined && recorded.snapshot !== rerun.snapshot) {
    out.push({
      field: 'snapshot',
      recorded: snapshotName(recorded.snapshot),
      rerun: snapshotName(rerun.snapshot),
      detail: await snapshotDetail(ctx.blobs, { recorded: recorded.snapshot ?? ctx.before.recorded, rerun: rerun.snapshot ?? ctx.before.rerun }),
    });
  }
  return out;
}

/**
 * - `match`: the rerun reproduces the recording.
 * - `nondeterministic`: even the session's original image does not reproduce it (timings, dates, random
 *   numbers, commit hashes that embed a time); such a step cannot show drift.
 * - `drift`: the original image reproduces the recording, the new image (or runtime) does not.
 */
export type RerunClass = 'match' | 'nondeterministic' | 'drift';

/** Classify a step from its differences on the original image and on the new one (when there is one). */
export function classify(onOriginal: readonly Difference[], onNew: readonly Difference[] | undefined): RerunClass {
  if (onOriginal.length > 0) return 'nondeterministic';
  return onNew && onNew.length > 0 ? 'drift' : 'match';
}
