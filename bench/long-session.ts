import '../test/helpers/quiet';
/**
 * Long sessions: workflow history bytes per tool call, from step 10 to step 2,000,
 * and step latency early and late. A local OpenAI-compatible server (the real
 * provider path) answers each request with one `shell` call printing N bytes of
 * base64, like the session that used to die at step 111.
 *
 * History is measured as Temporal stores it: the binary protobuf of every event,
 * summed over all the session's workflow runs (continue-as-new), each step's
 * model call included. Steps are delimited by the `callModel` activities.
 *
 * Run alone: `npx tsx bench/long-session.ts [steps] [outputBytes...]`.
 */
import type { Client } from '@temporalio/client';
import { KeelClient } from '../client';
import { firstEvent, getEvents, type Sql } from '../store';
import { eventBytes, historyBytes, sessionHistories } from '../inspect';
import { FakeLlmServer } from '../test/helpers/fake-llm-server';
import { testConfig, uniqueId, workflowBundle } from '../test/helpers/env';
import { TestTemporal } from '../test/helpers/temporal';
import { connectDatabase } from '../workers/services';
import { createWorkers } from '../workers/worker';
import { percentile } from './stats';

export interface LongSessionFigures {
  steps: number;
  outputBytes: number;
  runs: number;
  /** Bytes per tool call (one model call and one shell call each) over steps [from, to). */
  bytesPerCallEarly: number;
  bytesPerCallLate: number;
  /** late / early: flat is <= 1.1. */
  flatness: number;
  largestRunBytes: number;
  totalHistoryBytes: number;
  /** p50 time from one model.call to the next, over the early and late ranges. */
  stepP50EarlyMs: number;
  stepP50LateMs: number;
  latencyRatio: number;
  /** The ranges measured, e.g. [10, 110] and [1900, 2000]. */
  early: [number, number];
  late: [number, number];
  wallSec: number;
}

/** The ranges the issue asks for, shrunk in proportion for shorter runs. */
export function rangesFor(steps: number): { early: [number, number]; late: [number, number] } {
  if (steps >= 2000) return { early: [10, 110], late: [steps - 100, steps] };
  const w = Math.max(5, Math.floor(steps / 20));
  return { early: [Math.min(10, w), Math.min(10, w) + w], late: [steps - w, steps] };
}

/** Run one long session on running workers and measure it. */
export async function benchLongSession(args: {
  client: KeelClient;
  temporal: Client;
  sql: Sql;
  steps: number;
  outputBytes: number;
  log?: (line: string) => void;
}): Promise<LongSessionFigures> {
  const { steps, outputBytes } = args;
  const llm = await FakeLlmServer.start();
  llm.keepBodies = false;
  const command = `head -c ${Math.ceil((outputBytes * 3) / 4)} /dev/urandom | base64 -w0`;
  llm.respond((_body, n) => (n <= steps ? { toolCalls: [{ name: 'shell', args: { command } }], usage: { input: 100, output: 10 } } : { text: 'done' }));
  const t0 = Date.now();
  try {
    const id = await args.client.start(
      {
        task: `print ${outputBytes} bytes of base64, ${steps} times`,
        model: { provider: 'openai-compatible', model: 'bench-long', baseURL: llm.url, contextTokens: 64_000 },
        maxSteps: steps + 5,
      },
      { sessionId: uniqueId(`bench-long-${outputBytes}`) },
    );
    const progress = setInterval(() => args.log?.(`  long session ${outputBytes} B: ${llm.bodyBytes.length}/${steps} model calls`), 15_000);
    const result = await args.client.result(id).finally(() => clearInterval(progress));
    if (result.status !== 'completed') throw new Error(`long session ${id} ended ${result.status}: ${result.error}`);
    const wallSec = (Date.now() - t0) / 1000;

    const started = await firstEvent(args.sql, id, 'session.started');
    const runs = await sessionHistories(args.temporal, id, started?.data.workflowRunId ?? '');
    // Cumulative bytes at the start of each step (the scheduling of its callModel).
    const atStep: number[] = [];
    let total = 0;
    for (const run of runs) {
      for (const e of run.history.events ?? []) {
        if (e.activityTaskScheduledEventAttributes?.activityType?.name === 'callModel') atStep.push(total);
        total += eventBytes(e);
      }
    }
    atStep.push(total);
    const { early, late } = rangesFor(steps);
    const perCall = ([a, b]: [number, number]): number => ((atStep[b] ?? total) - (atStep[a] ?? 0)) / (b - a);
    const calls = (await getEvents(args.sql, id, { types: ['model.call'] })).map((e) => e.at.getTime());
    const gaps = (a: number, b: number): number[] => calls.slice(a, b).map((t, i) => (calls[a + i + 1] ?? t) - t);
    const p50 = (xs: number[]): number => percentile([...xs].sort((x, y) => x - y), 50);
    const early50 = p50(gaps(early[0], early[1]));
    const late50 = p50(gaps(late[0] - 1, late[1] - 1));
    return {
      steps,
      outputBytes,
      runs: runs.length,
      bytesPerCallEarly: perCall(early),
      bytesPerCallLate: perCall(late),
      flatness: perCall(late) / perCall(early),
      largestRunBytes: Math.max(...runs.map((r) => historyBytes(r.history))),
      totalHistoryBytes: total,
      stepP50EarlyMs: early50,
      stepP50LateMs: late50,
      latencyRatio: late50 / early50,
      early,
      late,
      wallSec,
    };
  } finally {
    await llm.close();
  }
}

async function main(): Promise<void> {
  const [stepsArg, ...sizes] = process.argv.slice(2);
  const temporal = await TestTemporal.start();
  const config = testConfig(temporal.address, { KEEL_HOST_ID: uniqueId('bench-long') });
  const workers = await createWorkers(config, { workflowBundle: await workflowBundle() });
  const running = workers.run();
  const client = await KeelClient.connect({ address: config.temporalAddress });
  const sql = await connectDatabase(config);
  try {
    for (const size of sizes.length ? sizes.map(Number) : [8192]) {
      const f = await benchLongSession({ client, temporal: client.temporal, sql, steps: Number(stepsArg ?? 200), outputBytes: size, log: console.log });
      console.log(JSON.stringify(f, null, 1));
    }
  } finally {
    await workers.shutdown();
    await running;
    await client.close();
    await sql.end();
    await temporal.down();
  }
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
