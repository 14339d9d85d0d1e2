/**
 * `keel audit rerun`: runtime drift, step by step. Every recorded sandbox tool
 * call of a session runs again in a fresh sandbox restored to the files the call
 * started from, with the same arguments, and its outcome (ok, exit code, error,
 * whole output, snapshot after it) is compared with the recording
 * (rerun-compare.ts says what is compared and how).
 *
 * Each call runs on the image its sandbox recorded and, with a new image, on
 * that one too: a step the original image does not reproduce is
 * `nondeterministic`; one the original reproduces and the new image does not is
 * `drift`. Each run gets its own container (its own session id
 * `<session>.rerun-<token>-<seq>-<o|n>`), destroyed when the call is done.
 *
 * The sandbox work is the sandbox activities' own (`SandboxActivities`, called
 * outside Temporal): provision with `restoreFrom`, `runTool` with a snapshot
 * against that parent, destroy. Outputs and snapshots a rerun stores are
 * referenced by no event; blob garbage collection removes them after its grace period.
 */
import { randomBytes } from 'node:crypto';
import type { BlobStore } from '../blobs';
import type { SandboxActivities } from '../common/activities';
import type { EventRow } from '../common/events';
import { describeCall, SNAPSHOT_TOOLS } from '../common/tools';
import type { SandboxHandle, SandboxSpec, ToolResult } from '../common/types';
import { contractDifferences, modelContract, recordedContract, type ContractDifference } from './contract';
import { classify, compareOutcomes, NORMALISATION, outcomeOf, type Difference, type RerunClass } from './rerun-compare';
import { recordedCalls, recordedLimits, type RecordedCall } from './rerun-plan';

/** The sandbox activities a rerun uses. */
export type RerunSandbox = Pick<SandboxActivities, 'provisionSandbox' | 'runTool' | 'destroySandbox'>;

/** One recorded call and what its rerun came to. */
export interface RerunStep {
  step: number;
  /** Seq of the call's `tool.call` event. */
  seq: number;
  callId: string;
  tool: string;
  /** The call in one short line. */
  args: string;
  class: RerunClass | 'skipped';
  /** Why a call was not rerun. */
  skipped?: string;
  /** The image the session ran the call on. */
  originalImage?: string;
  /** The image it was rerun on besides, when that differs from the original. */
  image?: string;
  /** How the rerun differed from the recording: on the original image, and on the new one. */
  differences: { original: Difference[]; image?: Difference[] };
}

export interface RerunReport {
  sessionId: string;
  /** The image asked for; undefined: each call on the image it recorded. */
  image?: string;
  fromStep: number;
  /** What was done to outputs before comparing. */
  normalisation: string;
  steps: RerunStep[];
  counts: Record<RerunStep['class'], number>;
  /** Some step drifted. */
  drifted: boolean;
  /**
   * What differs between the contract the session recorded and today's: today's tools and defaults
   * for the same model, and the sandbox the rerun got on the image it compares against.
   */
  contract: { recorded: boolean; differences: ContractDifference[] };
}

export interface RerunOptions {
  sessionId: string;
  /** The session's events, in any order. */
  events: readonly EventRow[];
  /** Where the session's snapshots, stored inputs and outputs are (the sandbox activities' store). */
  blobs: BlobStore;
  sandbox: RerunSandbox;
  /** Rerun on this image too. @default each call only on the image it recorded */
  image?: string;
  /** Only calls of this step and later. @default 1 */
  fromStep?: number;
  /** Called with each step as it is classified. */
  onStep?: (step: RerunStep) => void;
}

/** Run one recorded call once, on `image`, from the files it started from; always removes the container. */
export async function runRecordedCall(args: {
  sandbox: RerunSandbox;
  call: RecordedCall;
  image: string;
  limits: Omit<SandboxSpec, 'image'>;
  id: string;
  /** Told the sandbox the call got (its image id, executor, limits, network). */
  onHandle?: (handle: SandboxHandle) => void;
}): Promise<ToolResult> {
  const { sandbox, call, image, limits, id } = args;
  try {
    const handle = await sandbox.provisionSandbox({ sessionId: id, spec: { ...limits, image }, ...(call.before ? { restoreFrom: call.before } : {}) });
    args.onHandle?.(handle);
    return await sandbox.runTool({
      sessionId: id,
      handle: { containerId: handle.containerId },
      call: { id: call.callId, name: call.name, input: call.input, ...(call.inputRef ? { inputRef: call.inputRef } : {}) },
      // As the workflow does: a snapshot after the tools that can change files, against the files the call started from.
      ...(SNAPSHOT_TOOLS.has(call.name) ? { snapshot: call.before ? { parent: call.before } : {} } : {}),
    });
  } finally {
    await sandbox.destroySandbox({ sessionId: id });
  }
}

/** Rerun a session's sandbox tool calls and classify each. Throws on infrastructure failures (Docker, a missing image). */
export async function rerunSession(opts: RerunOptions): Promise<RerunReport> {
  const fromStep = opts.fromStep ?? 1;
  const limits = recordedLimits(opts.events);
  const token = randomBytes(3).toString('hex');
  const calls = recordedCalls(opts.events).filter((c) => c.step >= fromStep);
  const steps: RerunStep[] = [];
  // Today's sandbox: the one a call got on the image compared against (the new one, else the recorded one).
  let today: SandboxHandle | undefined;
  for (const call of calls) {
    const step = await rerunCall(call);
    steps.push(step);
    opts.onStep?.(step);
  }
  const counts = { match: 0, nondeterministic: 0, drift: 0, skipped: 0 };
  for (const s of steps) counts[s.class]++;
  const recorded = recordedContract(opts.events);
  const started = opts.events.find((e) => e.type === 'session.started');
  const model = started?.type === 'session.started' ? started.data.spec?.model : undefined;
  const contract = {
    recorded: recorded !== undefined,
    differences:
      recorded && model
        ? contractDifferences(recorded, { model: modelContract(model), ...(today?.runtime ? { sandbox: { image: today.image, ...today.runtime } } : {}) })
        : [],
  };
  return {
    sessionId: opts.sessionId,
    ...(opts.image ? { image: opts.image } : {}),
    fromStep,
    normalisation: NORMALISATION,
    steps,
    counts,
    drifted: counts.drift > 0,
    contract,
  };

  async function rerunCall(call: RecordedCall): Promise<RerunStep> {
    const base = { step: call.step, seq: call.seq, callId: call.callId, tool: call.name, args: describeCall(call.name, call.input), ...(call.image ? { originalImage: call.image } : {}) };
    const original = call.image ?? opts.image;
    if (call.skip || !call.result || !original) {
      return { ...base, class: 'skipped', skipped: call.skip ?? 'the session recorded no image for its sandbox: give --image', differences: { original: [] } };
    }
    const recorded = await outcomeOf(call.result, opts.blobs);
    const differences = async (image: string, which: 'o' | 'n'): Promise<Difference[]> => {
      const compared = which === 'n' || !opts.image || opts.image === original;
      const onHandle = (h: SandboxHandle) => {
        if (compared && !today) today = h;
      };
      const result = await runRecordedCall({ sandbox: opts.sandbox, call, image, limits, id: `${opts.sessionId}.rerun-${token}-${call.seq}-${which}`, onHandle });
      return compareOutcomes(recorded, await outcomeOf(result, opts.blobs), { blobs: opts.blobs, before: { recorded: call.before, rerun: call.before } });
    };
    const other = opts.image && opts.image !== original ? opts.image : undefined;
    const onNew = other ? await differences(other, 'n') : undefined;
    const onOriginal = await differences(original, 'o');
    return { ...base, ...(other ? { image: other } : {}), class: classify(onOriginal, onNew), differences: { original: onOriginal, ...(onNew ? { image: onNew } : {}) } };
  }
}
