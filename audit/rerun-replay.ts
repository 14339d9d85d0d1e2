/**
 * `keel audit rerun <id> --model replay`: the whole session again, end to end,
 * on today's runtime (today's workflow code, the current image or `--image`),
 * as a new session whose model is the recording: each recorded `model.call`
 * (its text and tool calls, stored ones read whole) becomes one scripted turn.
 * The new session says what it is: its task starts with "Rerun of session
 * <id>" and its spec's `rerunOf` names the original.
 *
 * Then every sandbox tool result of the new session is compared with the
 * recorded one at the same place (step, and position in the step), and so are
 * the final status and counts. A step that differs is classified:
 * - `inherited`: it started from other files than the recorded call did (an
 *   earlier step changed them differently), so it says nothing by itself;
 * - `nondeterministic`: rerun on its original image from its recorded files,
 *   the call does not reproduce the recording either;
 * - `drift`: it does; today's runtime is what differs.
 *
 * Not replayed: user messages (the scripted model needs none, but a kept-alive
 * session ends at its first answer without tool calls), and tool calls the
 * original turn dropped past the per-turn limit. `sleep` runs again for real.
 */
import { randomBytes } from 'node:crypto';
import { readBlob, type BlobStore } from '../blobs';
import type { EventRow } from '../common/events';
import { describeCall } from '../common/tools';
import type { ScriptTurn, SessionResult, SessionSpec, SessionStatus, ToolResult } from '../common/types';
import { classify, compareOutcomes, NORMALISATION, outcomeOf, type Difference, type RerunClass } from './rerun-compare';
import { recordedCalls, recordedLimits, type RecordedCall } from './rerun-plan';
import { runRecordedCall, type RerunSandbox } from './rerun';

/** Starting a session and waiting for its end (the client library's `start` and `result`). */
export interface SessionStarter {
  start(spec: SessionSpec, opts: { sessionId?: string }): Promise<string>;
  result(sessionId: string): Promise<SessionResult>;
}

export interface ReplayStep {
  step: number;
  callId: string;
  tool: string;
  /** The call in one short line. */
  args: string;
  class: RerunClass | 'inherited' | 'skipped' | 'missing';
  /** Why a call was not compared, or what is missing. */
  note?: string;
  /** How the replay's result differs from the recording. */
  differences: Difference[];
}

export interface ReplayReport {
  sessionId: string;
  /** The new session. */
  replayId: string;
  /** The image the new session's sandbox ran. */
  image?: string;
  normalisation: string;
  status: { recorded?: SessionStatus; replay: SessionStatus };
  modelTurns: { recorded: number; replay: number };
  toolCalls: { recorded: number; replay: number };
  steps: ReplayStep[];
  counts: Record<ReplayStep['class'], number>;
  notes: string[];
  /** Something drifted, a call is missing, or the session ended differently (status or model turns). */
  differs: boolean;
}

export interface ReplayOptions {
  sessionId: string;
  /** The original session's events. */
  events: readonly EventRow[];
  blobs: BlobStore;
  sessions: SessionStarter;
  /** A session's events (the new one's, once it has ended). */
  readEvents(sessionId: string): Promise<EventRow[]>;
  /** For checking a differing step on its original image. */
  sandbox: RerunSandbox;
  /** The new session's image. @default the runtime's default image */
  image?: string;
  /** The new session's id. @default `<id>.replay-<random>` */
  replayId?: string;
}

/** Stored content as the model sent it: JSON, or the raw text when it was not JSON (as the sandbox activities read it). */
function parseStored(raw: string): unknown {
  try {
    return JSON.parse(raw) as unknown;
  } catch {
    return raw;
  }
}

/**
 * The recorded model answers as a script, one turn per `model.call`. A scripted model names its calls
 * `call_<turn>_<i>`, so `read_output` calls are pointed at the replay's ids of the calls they read.
 */
export async function replayScript(events: readonly EventRow[], blobs: BlobStore): Promise<ScriptTurn[]> {
  const turns = events.filter((e): e is Extract<EventRow, { type: 'model.call' }> => e.type === 'model.call').sort((a, b) => a.seq - b.seq);
  const ids = new Map<string, string>();
  turns.forEach((t, turn) => t.data.toolCalls.forEach((c, i) => ids.set(c.id, `call_${turn}_${i}`)));
  const script: ScriptTurn[] = [];
  for (const { data } of turns) {
    const text = data.textRef ? (await readBlob(blobs, data.textRef.sha)).toString('utf8') : data.text;
    const toolCalls = [];
    for (const c of data.toolCalls) {
      let input = c.inputRef ? parseStored((await readBlob(blobs, c.inputRef.sha)).toString('utf8')) : c.input;
      const read = input as { callId?: unknown } | null;
      if (c.name === 'read_output' && typeof read?.callId === 'string' && ids.has(read.callId)) input = { ...read, callId: ids.get(read.callId) };
      toolCalls.push({ name: c.name, input });
    }
    script.push({ ...(text ? { text } : {}), ...(toolCalls.length ? { toolCalls } : {}) });
  }
  return script;
}

/** The spec of the new session: the original's, with the script, a task and `rerunOf` that say what it is. */
function replaySpec(sessionId: string, events: readonly EventRow[], script: ScriptTurn[], image: string | undefined): SessionSpec {
  const started = events.find((e) => e.type === 'session.started');
  if (started?.type !== 'session.started') throw new Error(`session ${sessionId} has no session.started event`);
  const original = started.data.spec;
  return {
    task: `Rerun of session ${sessionId}, its recorded model answers replayed. Original task: ${started.data.task}`,
    model: {
      provider: 'scripted',
      model: `replay of ${started.data.model}`,
      script,
      ...(original?.model.maxOutputTokens ? { maxOutputTokens: original.model.maxOutputTokens } : {}),
      ...(original?.model.contextTokens ? { contextTokens: original.model.contextTokens } : {}),
    },
    sandbox: { ...recordedLimits(events), ...(image ? { image } : {}) },
    maxSteps: started.data.maxSteps,
    tenant: started.data.tenant,
    ...(original?.systemPrompt ? { systemPrompt: original.systemPrompt } : {}),
    ...(original?.stepsPerRun ? { stepsPerRun: original.stepsPerRun } : {}),
    rerunOf: sessionId,
  };
}

/** Calls by (step, position in the step). */
function byPlace(calls: readonly RecordedCall[]): Map<string, RecordedCall> {
  const out = new Map<string, RecordedCall>();
  const seen = new Map<number, number>();
  for (const c of calls) {
    const i = seen.get(c.step) ?? 0;
    seen.set(c.step, i + 1);
    out.set(`${c.step}/${i}`, c);
  }
  return out;
}

const placeOf = (c: RecordedCall) => ({ step: c.step, callId: c.callId, tool: c.name, args: describeCall(c.name, c.input) });

const ended = (events: readonly EventRow[]) => events.filter((e): e is Extract<EventRow, { type: 'session.ended' }> => e.type === 'session.ended').at(-1)?.data;

/** Replay a session's model answers as a new session on today's runtime and report where it differs. */
export async function replaySessionModel(opts: ReplayOptions): Promise<ReplayReport> {
  const { sessionId, events, blobs } = opts;
  const script = await replayScript(events, blobs);
  const replayId = opts.replayId ?? `${sessionId}.replay-${randomBytes(3).toString('hex')}`;
  await opts.sessions.start(replaySpec(sessionId, events, script, opts.image), { sessionId: replayId });
  const result = await opts.sessions.result(replayId);
  const replayEvents = await opts.readEvents(replayId);

  const recorded = byPlace(recordedCalls(events));
  const replayed = byPlace(recordedCalls(replayEvents));
  const steps: ReplayStep[] = [];
  for (const [place, call] of recorded) {
    const again = replayed.get(place);
    if (call.skip || !call.result) steps.push({ ...placeOf(call), class: 'skipped', note: call.skip ?? 'no result', differences: [] });
    else if (!again?.result) steps.push({ ...placeOf(call), class: 'missing', note: again ? (again.skip ?? 'no result') : 'the replay made no such call', differences: [] });
    else steps.push({ ...placeOf(call), ...(await compareStep(call, call.result, again, again.result)) });
  }
  for (const [place, call] of replayed) {
    if (!recorded.has(place)) steps.push({ ...placeOf(call), class: 'missing', note: 'the recording has no such call', differences: [] });
  }

  const recordedEnd = ended(events);
  const counts = { match: 0, nondeterministic: 0, drift: 0, inherited: 0, skipped: 0, missing: 0 };
  for (const s of steps) counts[s.class]++;
  const notes: string[] = [];
  const messages = events.filter((e) => e.type === 'message.user').length;
  if (messages > 0) notes.push(`${messages} user message${messages === 1 ? ' was' : 's were'} not replayed`);
  const dropped = events.reduce((n, e) => n + (e.type === 'model.call' ? (e.data.droppedCalls ?? 0) : 0), 0);
  if (dropped > 0) notes.push(`${dropped} tool calls the original turns dropped past the per-turn limit are not in the script`);
  const provisioned = replayEvents.find((e) => e.type === 'sandbox.provisioned');
  const report: ReplayReport = {
    sessionId,
    replayId,
    ...(provisioned?.type === 'sandbox.provisioned' ? { image: provisioned.data.image } : {}),
    normalisation: NORMALISATION,
    status: { ...(recordedEnd ? { recorded: recordedEnd.status } : {}), replay: result.status },
    modelTurns: { recorded: script.length, replay: result.steps },
    toolCalls: { recorded: recordedEnd?.toolCalls ?? recorded.size, replay: result.toolCalls },
    steps,
    counts,
    notes,
    differs: false,
  };
  report.differs = counts.drift > 0 || counts.missing > 0 || report.status.recorded !== report.status.replay || report.modelTurns.recorded !== report.modelTurns.replay;
  return report;

  /** Compare one replayed call with its recording; classify a difference. */
  async function compareStep(call: RecordedCall, result: ToolResult, again: RecordedCall, againResult: ToolResult): Promise<Pick<ReplayStep, 'class' | 'differences' | 'note'>> {
    const recordedOutcome = await outcomeOf(result, blobs);
    const differences = await compareOutcomes(recordedOutcome, await outcomeOf(againResult, blobs), { blobs, before: { recorded: call.before, rerun: again.before } });
    if (differences.length === 0) return { class: 'match', differences };
    if (call.before !== again.before) return { class: 'inherited', note: 'it started from other files than the recorded call', differences };
    if (!call.image) return { class: 'drift', note: 'no recorded image to check it against', differences };
    const check = await runRecordedCall({
      sandbox: opts.sandbox,
      call,
      image: call.image,
      limits: recordedLimits(events),
      id: `${replayId}-check-${call.seq}`,
    });
    const onOriginal = await compareOutcomes(recordedOutcome, await outcomeOf(check, blobs), { blobs, before: { recorded: call.before, rerun: call.before } });
    return { class: classify(onOriginal, differences), differences };
  }
}
