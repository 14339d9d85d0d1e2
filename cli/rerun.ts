/**
 * `keel audit rerun <id>`: re-executes a session's recorded tool calls
 * (audit/rerun.ts) or, with `--model replay`, the whole session
 * (audit/rerun-replay.ts), and prints which steps match, are nondeterministic or drifted.
 */
import { createSandboxActivities } from '../activities/sandbox';
import { rerunSession, replaySessionModel, type Difference, type ReplayReport, type RerunReport, type RerunStep } from '../audit';
import { SessionError } from '../common/errors';
import { SandboxRuntime } from '../host/runtime';
import { getEvents } from '../store';
import type { KeelConfig } from '../workers/config';
import { connectDatabase, connectDocker, openBlobStore } from '../workers/services';
import { connectClient, withWorker } from './sessions';
import { print, printJson } from './terminal';

export interface RerunCliOptions {
  image?: string;
  fromStep: string;
  model?: string;
  worker: boolean;
  json?: boolean;
}

/** Run the command; returns the exit code: 0 nothing drifted, 1 something did. */
export async function runRerun(config: KeelConfig, sessionId: string, o: RerunCliOptions): Promise<number> {
  const fromStep = Number(o.fromStep);
  if (!Number.isInteger(fromStep) || fromStep < 1) throw new SessionError('--from-step takes a step number (1, 2, ...), as `keel show` lists them');
  if (o.model !== undefined && o.model !== 'replay') throw new SessionError(`--model takes "replay", not "${o.model}"`);
  if (o.model && fromStep > 1) throw new SessionError('--model replay drives the whole session again; --from-step is for the per-call rerun');
  const sql = await connectDatabase(config);
  const store = openBlobStore(config);
  const runtime = new SandboxRuntime(await connectDocker(config));
  const sandbox = createSandboxActivities({
    runtime,
    blobs: store.blobs,
    config: { hostId: config.hostId, ...(config.sandboxImage ? { defaultImage: config.sandboxImage } : {}) },
  });
  try {
    const events = await getEvents(sql, sessionId);
    if (events.length === 0) throw new SessionError(`no session ${sessionId} in the event log`);
    if (o.model) {
      const client = await connectClient(config);
      try {
        const report = await withWorker(config, o.worker, () =>
          replaySessionModel({ sessionId, events, blobs: store.blobs, sessions: client, readEvents: (id) => getEvents(sql, id), sandbox, ...(o.image ? { image: o.image } : {}) }),
        );
        if (o.json) printJson(report);
        else printReplay(report);
        return report.differs ? 1 : 0;
      } finally {
        await client.close();
      }
    }
    if (!o.json) print(`rerun of ${sessionId}${o.image ? ` on ${o.image} (and each call on its recorded image)` : ' on the images it recorded'}, from step ${fromStep}`);
    const report = await rerunSession({
      sessionId,
      events,
      blobs: store.blobs,
      sandbox,
      fromStep,
      ...(o.image ? { image: o.image } : {}),
      ...(o.json ? {} : { onStep: printStep }),
    });
    if (o.json) printJson(report);
    else printSummary(report);
    return report.drifted ? 1 : 0;
  } finally {
    await runtime.close();
    store.close();
    await sql.end({ timeout: 2 });
  }
}

function printDifferences(differences: readonly Difference[], indent = '      '): void {
  for (const d of differences) {
    print(`${indent}${d.field}: ${d.recorded} recorded, ${d.rerun} now`);
    for (const line of d.detail) print(`${indent}  ${line}`);
  }
}

function printStep(s: RerunStep): void {
  print(`  step ${String(s.step).padEnd(4)} ${s.tool.padEnd(11)} ${s.class.padEnd(17)} ${s.args}`);
  if (s.class === 'skipped') print(`      ${s.skipped}`);
  if (s.class === 'drift') printDifferences(s.differences.image ?? []);
  if (s.class === 'nondeterministic') {
    print('      differs on its original image too:');
    printDifferences(s.differences.original);
  }
}

function printSummary(r: RerunReport): void {
  if (!r.contract.recorded) print('runtime contract: the session recorded none (it predates contracts)');
  else if (r.contract.differences.length === 0) print('runtime contract: the same as recorded (model settings, tools, Keel, image, executor, limits, network)');
  else {
    print('runtime contract differs from the recording:');
    for (const d of r.contract.differences) print(`  ${d.field}: ${d.recorded} recorded, ${d.today} now`);
  }
  const c = r.counts;
  print(`${c.match} match, ${c.nondeterministic} nondeterministic, ${c.drift} drift, ${c.skipped} skipped: ${r.drifted ? 'DRIFT' : 'no drift'}`);
  print(`normalisation: ${r.normalisation}`);
}

function printReplay(r: ReplayReport): void {
  print(`replayed ${r.sessionId} as ${r.replayId}${r.image ? ` on ${r.image}` : ''}: ${r.status.replay} (recorded: ${r.status.recorded ?? 'not ended'})`);
  print(`  ${r.modelTurns.replay} model turns (recorded ${r.modelTurns.recorded}), ${r.toolCalls.replay} tool calls (recorded ${r.toolCalls.recorded})`);
  for (const s of r.steps) {
    print(`  step ${String(s.step).padEnd(4)} ${s.tool.padEnd(11)} ${s.class.padEnd(17)} ${s.args}`);
    if (s.note) print(`      ${s.note}`);
    if (s.class !== 'match') printDifferences(s.differences);
  }
  const c = r.counts;
  print(`${c.match} match, ${c.nondeterministic} nondeterministic, ${c.drift} drift, ${c.inherited} inherited, ${c.missing} missing, ${c.skipped} skipped: ${r.differs ? 'DIFFERS' : 'no difference'}`);
  for (const n of r.notes) print(`note: ${n}`);
  print(`normalisation: ${r.normalisation}`);
}
