/**
 * `keel audit verify`: check a session's record for someone who does not trust
 * the operator. Four independent checks, each naming the first thing it finds:
 *
 * 1. The hash chain (store/chain.ts): every event's hash covers its content and
 *    the hash before it. An edited event no longer matches its hash; a removed,
 *    inserted or reordered one breaks the links or the seq order.
 * 2. The anchors: the chain head the event-writing activity returned after each
 *    batch is in the Temporal history. Rewriting Postgres consistently (every
 *    hash recomputed) still disagrees with those heads.
 * 3. The content: what each model and tool activity returned, as the history
 *    holds it, against the events that recorded it, so a rewritten event is named
 *    with what differs.
 * 4. The blobs: every stored output, argument, text, history archive, snapshot
 *    manifest and snapshot file the events reference is there and still hashes
 *    to its name.
 *
 * Events written outside the workflow (the reconciler's `session.ended`, the
 * archiver's `session.archived`) are chained but cannot be anchored: they are
 * reported as such, not as failures.
 */
import { createHash } from 'node:crypto';
import { canonicalJson } from '../common/canonical-json';
import type { EventRow } from '../common/events';
import { readManifest } from '../common/manifest';
import type { ModelTurn, ToolResult } from '../common/types';
import { chainHash, type ChainedEventRow } from '../store';
import { referencesOf } from './gc';
import { withoutWorkflowNote } from './rerun-compare';
import { activitiesOf, anchorsOf, startArgs, type History } from './history';

/** Everything verify looks at; from Postgres, Temporal and the blob store, or from a bundle. */
export interface Evidence {
  sessionId: string;
  events: ChainedEventRow[];
  /** Every run's history, oldest first; undefined when neither Temporal nor an archive has it. */
  histories?: Array<{ runId: string; history: History }>;
  /** A blob's bytes, or undefined when the store lacks it. */
  readBlob(sha: string): Promise<Buffer | undefined>;
}

export type FindingKind = 'changed' | 'removed' | 'inserted' | 'reordered' | 'rewritten' | 'blob-missing' | 'blob-changed';

export interface Finding {
  kind: FindingKind;
  seq?: number;
  message: string;
}

export interface VerifyReport {
  sessionId: string;
  ok: boolean;
  events: number;
  /** Events with a chain hash (older ones were written before chains). */
  chained: number;
  runs: number;
  anchors: number;
  /** Model and tool results compared with the history. */
  compared: number;
  blobs: number;
  /** Failures, first found first. */
  problems: Finding[];
  /** Not failures: events that cannot be anchored, checks that could not run. */
  notes: string[];
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const short = (v: unknown, max = 80): string => {
  const t = typeof v === 'string' ? v : JSON.stringify(v) ?? 'undefined';
  const one = t.replace(/\s+/g, ' ');
  return one.length > max ? `${JSON.stringify(one.slice(0, max))}...` : JSON.stringify(one);
};

/** The first field that differs between two objects, for a readable message. */
function firstDifference(history: Record<string, unknown>, log: Record<string, unknown>, fields: readonly string[]): string | undefined {
  for (const f of fields) {
    if (canonicalJson(history[f] ?? null) !== canonicalJson(log[f] ?? null)) return `${f}: history has ${short(history[f])}, the log has ${short(log[f])}`;
  }
  return undefined;
}

function checkChain(events: readonly ChainedEventRow[], report: VerifyReport): void {
  let prev: ChainedEventRow | undefined;
  let legacy = 0;
  for (const e of events) {
    const expectedSeq = prev ? prev.seq + 1 : 1;
    if (e.seq > expectedSeq) {
      report.problems.push({ kind: 'removed', seq: expectedSeq, message: `event ${expectedSeq}${e.seq - 1 > expectedSeq ? `..${e.seq - 1}` : ''} removed: the log goes from ${expectedSeq - 1} to ${e.seq}` });
    }
    if (e.hash === null) {
      legacy++;
      prev = e;
      continue;
    }
    report.chained++;
    const linked = prev?.hash ?? null;
    if (e.prevHash !== linked && e.seq === expectedSeq) {
      report.problems.push({
        kind: 'reordered',
        seq: e.seq,
        message: `event ${e.seq} (${e.type}) does not follow event ${prev?.seq ?? 'none'} in the chain: an event was inserted, removed or moved here`,
      });
    }
    if (chainHash(e.prevHash ?? undefined, { sessionId: e.sessionId, seq: e.seq, type: e.type, data: e.data }) !== e.hash) {
      report.problems.push({ kind: 'changed', seq: e.seq, message: `event ${e.seq} (${e.type}) changed: its content no longer matches its hash` });
    }
    prev = e;
  }
  if (legacy > 0) report.notes.push(`${legacy} events were written before Keel chained events; they are checked against the history only`);
}

function checkAnchors(events: readonly ChainedEventRow[], histories: NonNullable<Evidence['histories']>, report: VerifyReport): number {
  const bySeq = new Map(events.map((e) => [e.seq, e]));
  let lastGood = 0;
  let lastAnchor = 0;
  for (const { history } of histories) {
    for (const a of anchorsOf(history)) {
      report.anchors++;
      lastAnchor = Math.max(lastAnchor, a.through);
      const e = bySeq.get(a.through);
      if (!e) {
        report.problems.push({ kind: 'removed', seq: a.through, message: `event ${a.through} removed: the history recorded a write up to it` });
      } else if (e.hash !== a.head) {
        report.problems.push({
          kind: 'rewritten',
          seq: a.through,
          message: `the log after event ${lastGood} does not match the chain head the Temporal history recorded at event ${a.through}: rewritten`,
        });
      } else {
        lastGood = a.through;
      }
    }
  }
  return lastAnchor;
}

/** What the history says each model and tool call returned, against the events that recorded it. */
function checkContent(events: readonly ChainedEventRow[], histories: NonNullable<Evidence['histories']>, report: VerifyReport): void {
  const activities = histories.flatMap((r) => activitiesOf(r.history));
  const models = activities.filter((a) => a.type === 'callModel').map((a) => a.result as ModelTurn);
  const tools = new Map<string, ToolResult>();
  for (const a of activities) if ((a.type === 'runTool' || a.type === 'readOutput') && a.result) tools.set((a.result as ToolResult).callId, a.result as ToolResult);
  // Events a fork copied were produced by the original session's activities, not this one's.
  const modelEvents = events.filter((e): e is Extract<ChainedEventRow, { type: 'model.call' }> => e.type === 'model.call' && !e.data.copiedFrom);
  for (const [i, e] of modelEvents.entries()) {
    const turn = models[i];
    if (!turn) continue; // a call the history does not hold (an older run's) cannot be compared
    report.compared++;
    const diff = firstDifference(turn as unknown as Record<string, unknown>, e.data as unknown as Record<string, unknown>, ['text', 'textRef', 'toolCalls', 'finishReason', 'usage', 'context']);
    if (diff) report.problems.push({ kind: 'changed', seq: e.seq, message: `event ${e.seq} (model.call, step ${e.data.step}) changed: ${diff}` });
  }
  for (const e of events) {
    if (e.type !== 'tool.result' || e.data.copiedFrom) continue;
    const result = tools.get(e.data.callId);
    if (!result) continue; // invalid calls, sleeps and interrupted calls are the workflow's own results
    report.compared++;
    // The workflow appends one note of its own to the last result of a turn whose extra calls it dropped.
    const logged = { ...e.data, output: withoutWorkflowNote(e.data.output) };
    const diff = firstDifference(result as unknown as Record<string, unknown>, logged as unknown as Record<string, unknown>, ['name', 'ok', 'exitCode', 'error', 'output', 'outputRef', 'snapshot']);
    if (diff) report.problems.push({ kind: 'changed', seq: e.seq, message: `event ${e.seq} (tool.result of ${e.data.callId}) changed: ${diff}` });
  }
  const [spec] = startArgs(histories[0]?.history ?? {}) as Array<{ task?: string } | undefined>;
  const started = events.find((e) => e.type === 'session.started');
  if (spec && started?.type === 'session.started') {
    report.compared++;
    if (spec.task !== started.data.task) report.problems.push({ kind: 'changed', seq: started.seq, message: `event ${started.seq} (session.started) changed: task: history has ${short(spec.task)}, the log has ${short(started.data.task)}` });
  }
}

async function checkBlobs(evidence: Evidence, report: VerifyReport): Promise<void> {
  const seen = new Set<string>();
  const check = async (sha: string, what: string, seq: number): Promise<Buffer | undefined> => {
    if (seen.has(sha)) return undefined;
    seen.add(sha);
    report.blobs++;
    const data = await evidence.readBlob(sha);
    if (!data) {
      report.problems.push({ kind: 'blob-missing', seq, message: `blob ${sha.slice(0, 12)} (${what}, event ${seq}) is missing from the blob store` });
      return undefined;
    }
    if (sha256(data) !== sha) {
      report.problems.push({ kind: 'blob-changed', seq, message: `blob ${sha.slice(0, 12)} (${what}, event ${seq}) changed: its content no longer hashes to its name` });
      return undefined;
    }
    return data;
  };
  for (const e of evidence.events) {
    const refs = referencesOf(e as EventRow);
    for (const sha of refs.blobs) await check(sha, e.type === 'session.archived' ? 'history archive' : 'stored content', e.seq);
    for (const id of refs.snapshots) {
      // Every object of the manifest (the root, and each directory's tree in version 2) is checked as it is read.
      const objects = { getManifest: async (sha: string) => (await check(sha, sha === id ? 'snapshot manifest' : `tree of snapshot ${id.slice(0, 12)}`, e.seq))?.toString('utf8') };
      const stored = await readManifest(objects, id).catch(() => undefined); // what is missing or changed is a problem already
      if (!stored) continue;
      for (const entry of stored.manifest.entries) {
        if (entry.type === 'file') await check(entry.sha, `file ${entry.path} of snapshot ${id.slice(0, 12)}`, e.seq);
      }
    }
  }
}

/** Verify a session's record. Never throws on tampering: that is what the report is for. */
export async function verifySession(evidence: Evidence): Promise<VerifyReport> {
  const events = [...evidence.events].sort((a, b) => a.seq - b.seq);
  const report: VerifyReport = {
    sessionId: evidence.sessionId,
    ok: false,
    events: events.length,
    chained: 0,
    runs: evidence.histories?.length ?? 0,
    anchors: 0,
    compared: 0,
    blobs: 0,
    problems: [],
    notes: [],
  };
  if (events.length === 0) {
    report.problems.push({ kind: 'removed', message: `no events for session ${evidence.sessionId}` });
    return report;
  }
  checkChain(events, report);
  if (evidence.histories && evidence.histories.length > 0) {
    const lastAnchor = checkAnchors(events, evidence.histories, report);
    checkContent(events, evidence.histories, report);
    for (const e of events) {
      if (e.seq <= lastAnchor) continue;
      const source = (e.data as { source?: unknown }).source;
      if (source === 'reconciler' || source === 'archiver') report.notes.push(`event ${e.seq} (${e.type}) was written by the ${source}: chained, not anchored in the history`);
      else if (report.anchors > 0) report.problems.push({ kind: 'inserted', seq: e.seq, message: `event ${e.seq} (${e.type}) is not anchored in the Temporal history: inserted after the last write the workflow recorded` });
    }
    if (report.anchors === 0) report.notes.push('the history holds no chain heads (a session from before chained events): anchors not checked');
  } else {
    report.notes.push('no Temporal history or archive: the chain and blobs are checked, not the anchors');
  }
  await checkBlobs(evidence, report);
  report.problems.sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0));
  report.ok = report.problems.length === 0;
  return report;
}

/** Evidence for a live session: its events, its histories (Temporal, else the archive), its blobs. */
export function liveEvidence(args: {
  sessionId: string;
  events: ChainedEventRow[];
  histories?: Array<{ runId: string; history: History }>;
  blobs: { get(sha: string): Promise<NodeJS.ReadableStream> };
}): Evidence {
  return {
    sessionId: args.sessionId,
    events: args.events,
    ...(args.histories ? { histories: args.histories } : {}),
    async readBlob(sha: string): Promise<Buffer | undefined> {
      try {
        const chunks: Buffer[] = [];
        for await (const c of await args.blobs.get(sha)) chunks.push(c as Buffer);
        return Buffer.concat(chunks);
      } catch (err) {
        if ((err as Error).name === 'BlobMissingError') return undefined;
        throw err;
      }
    },
  };
}
