/**
 * Where a durable tool call's time goes, from the session's Temporal history and its event log.
 *
 * One scripted session makes BENCH_CALLS (default 200) `echo hi` calls in one model turn, as the
 * "durable tool call" figure of bench/run.ts does. For each call after the first it splits the gap
 * between consecutive `tool.result` events into the server's and the worker's parts:
 *
 *   runTool scheduled -> started       activity dispatch (server, matching)
 *   runTool started   -> completed     the activity: executor round trip, output, snapshot
 *   completed -> workflow task scheduled -> started   workflow task dispatch
 *   workflow task started -> completed (the local activity that records events runs inside it)
 *
 * and prints how many workflow tasks, activities and local-activity markers each call cost.
 *
 *   node --import tsx bench/calls.ts
 */
import '../test/helpers/quiet';
import { tsToMs } from '@temporalio/common/lib/time';
import type { temporal } from '@temporalio/proto';
import { KeelClient } from '../client';
import type { ScriptTurn } from '../common/types';
import { getEvents } from '../store';
import { connectDatabase } from '../workers/services';
import { createWorkers } from '../workers/worker';
import { testConfig, uniqueId, workflowBundle } from '../test/helpers/env';
import { TestTemporal } from '../test/helpers/temporal';
import { summarize, type Summary } from './stats';

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

export interface CallProfile {
  calls: number;
  /** Gap between consecutive tool.result events in Postgres. */
  perCall: Summary;
  activityDispatch: Summary;
  activityRun: Summary;
  /** runTool completed -> workflow task started. */
  taskDispatch: Summary;
  /** Workflow task started -> completed (includes the event-recording local activity). */
  taskRun: Summary;
  /** Workflow task completed -> next runTool's started (schedule, dispatch). */
  nextDispatch: Summary;
  /** Per call: workflow tasks, activities, local activity markers, history events. */
  perCallCounts: { workflowTasks: number; activities: number; markers: number; events: number };
}

/** The profile of one session's tool calls from its history. */
export function profileHistory(events: HistoryEvent[]): Omit<CallProfile, 'perCall' | 'calls'> {
  const at = (e: HistoryEvent | undefined) => tsToMs(e?.eventTime);
  const byId = new Map(events.map((e) => [String(e.eventId), e]));
  const scheduled = events.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'runTool');
  const dispatch: number[] = [];
  const run: number[] = [];
  const taskDispatch: number[] = [];
  const taskRun: number[] = [];
  const nextDispatch: number[] = [];
  for (const s of scheduled) {
    const started = events.find((e) => String(e.activityTaskStartedEventAttributes?.scheduledEventId ?? '') === String(s.eventId));
    const done = events.find((e) => String(e.activityTaskCompletedEventAttributes?.scheduledEventId ?? '') === String(s.eventId));
    if (!started || !done) continue;
    dispatch.push(at(started) - at(s));
    run.push(at(done) - at(started));
    const after = events.filter((e) => Number(e.eventId) > Number(done.eventId));
    const wfStarted = after.find((e) => e.workflowTaskStartedEventAttributes);
    const wfDone = after.find((e) => e.workflowTaskCompletedEventAttributes);
    if (wfStarted) taskDispatch.push(at(wfStarted) - at(done));
    if (wfStarted && wfDone) taskRun.push(at(wfDone) - at(wfStarted));
    const next = after.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'runTool');
    const nextStarted = next && events.find((e) => String(e.activityTaskStartedEventAttributes?.scheduledEventId ?? '') === String(next.eventId));
    if (wfDone && nextStarted) nextDispatch.push(at(nextStarted) - at(wfDone));
  }
  void byId;
  const n = Math.max(1, scheduled.length);
  const count = (f: (e: HistoryEvent) => unknown) => events.filter(f).length / n;
  return {
    activityDispatch: summarize(dispatch),
    activityRun: summarize(run),
    taskDispatch: summarize(taskDispatch),
    taskRun: summarize(taskRun),
    nextDispatch: summarize(nextDispatch),
    perCallCounts: {
      workflowTasks: count((e) => e.workflowTaskCompletedEventAttributes),
      activities: count((e) => e.activityTaskScheduledEventAttributes),
      markers: count((e) => e.markerRecordedEventAttributes),
      events: events.length / n,
    },
  };
}

export function formatProfile(p: CallProfile): string {
  const f = (s: Summary) => `${s.p50.toFixed(1)} (p95 ${s.p95.toFixed(1)})`;
  const c = p.perCallCounts;
  return (
    `per call ${f(p.perCall)} ms = activity dispatch ${f(p.activityDispatch)} + activity ${f(p.activityRun)} + ` +
    `workflow task dispatch ${f(p.taskDispatch)} + workflow task ${f(p.taskRun)} (then next activity scheduled->started ${f(p.nextDispatch)}); ` +
    `per call: ${c.workflowTasks.toFixed(2)} workflow tasks, ${c.activities.toFixed(2)} activities, ${c.markers.toFixed(2)} local activities, ${c.events.toFixed(1)} history events`
  );
}

/** Run one session of `calls` echo calls on a worker already running, and profile it. */
export async function profileCalls(keel: KeelClient, sql: Parameters<typeof getEvents>[0], calls: number): Promise<CallProfile> {
  const script: ScriptTurn[] = [{ toolCalls: Array.from({ length: calls }, () => ({ name: 'shell', input: { command: 'echo hi' } })) }, { text: 'done' }];
  const id = await keel.start({ task: 'bench', model: { provider: 'scripted', model: 'bench', script }, maxSteps: 5 }, { sessionId: uniqueId('bench-calls') });
  const result = await keel.result(id);
  if (result.status !== 'completed') throw new Error(`bench session ${result.status}: ${result.error}`);
  const results = (await getEvents(sql, id)).filter((e) => e.type === 'tool.result');
  const perCall = results.slice(1).map((e, i) => e.at.getTime() - results[i]!.at.getTime());
  const { events } = await keel.temporal.workflow.getHandle(id).fetchHistory();
  return { calls, perCall: summarize(perCall), ...profileHistory(events ?? []) };
}

async function main() {
  const calls = Number(process.env.BENCH_CALLS ?? 200);
  const temporal = await TestTemporal.start();
  const config = testConfig(temporal.address, { KEEL_HOST_ID: uniqueId('bench-calls'), KEEL_REAP_INTERVAL_SEC: '0' });
  const sql = await connectDatabase(config);
  const workers = await createWorkers(config, { workflowBundle: await workflowBundle() });
  const running = workers.run();
  const keel = await KeelClient.connect({ address: config.temporalAddress });
  try {
    for (let i = 0; i < Number(process.env.BENCH_CALL_RUNS ?? 1); i++) console.log(formatProfile(await profileCalls(keel, sql, calls)));
  } finally {
    await keel.close();
    await workers.shutdown();
    await running;
    await sql.end({ timeout: 2 });
    await temporal.down();
  }
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
