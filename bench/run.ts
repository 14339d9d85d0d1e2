/**
 * `npm run bench`: Keel's speed, each figure next to its baseline measured in
 * the same run and the target it is held to. Prints ONE table and writes the
 * raw numbers to bench/results/latest.json. Medians and ratios, not single
 * runs: the machines are noisy. Timings are never asserted; this is not a test.
 *
 * Env: BENCH_CALLS (default 200) tool calls per latency figure,
 *      BENCH_SANDBOXES (default 10) containers for each start-time figure,
 *      BENCH_POOL_SIZE (default 2) warm-pool size for the warm start figure,
 *      BENCH_RECOVERIES (default 3) worker kills for the recovery figure,
 *      BENCH_SNAPSHOT_RUNS (default 5) runs of each snapshot figure,
 *      BENCH_MANY_FILES (default 100000, 0 skips), BENCH_MANY_FILE_BYTES (default 3072): bench/snapshots.ts's many-files workspace;
 *      BENCH_DENSITY_LEVELS (default "1,10,50,100"), BENCH_DENSITY_CALLS (default 50): bench/density.ts;
 *      BENCH_DENSITY_LEVELS=none skips density;
 *      BENCH_RUNTIMES=none skips runsc beside runc (bench/runtimes.ts: BENCH_RUNTIME_STARTS, _CALLS, _SNAPSHOTS);
 *      BENCH_LONG_STEPS (default 2000), BENCH_LONG_OUTPUTS (default "8192,65536", or "none"): bench/long-session.ts.
 *
 * bench/results/latest.json (format 2; fields are only ever added):
 *   {
 *     "format": 2,
 *     "at": ISO time of the run,
 *     "calls": BENCH_CALLS, "sandboxes": BENCH_SANDBOXES,
 *     "machine": { "cpus", "memGiB", "node" },
 *     "settings": { every BENCH_* value used, "warmPool": true when the pool figure used a real pool },
 *     "rows": [{                                  one per table line, in table order
 *       "figure": string,
 *       "unit": "ms" | "calls/s" | "MiB",
 *       "keel": { n, p50, p95, p99, min, max },   samples in `unit` (a single figure has n = 1)
 *       "baseline"?: { "name", "summary": { n, p50, p95, p99, min, max } },
 *       "ratio"?: number,                          baseline p50 / keel p50 (> 1: Keel is faster)
 *       "target"?: string, "verdict"?: "PASS" | "MISS"
 *     }],
 *     "density": [DensityLevel]                    bench/density.ts, one per level
 *   }
 */
import '../test/helpers/quiet';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import type Docker from 'dockerode';
import { tsToMs } from '@temporalio/common/lib/time';
import { KeelClient } from '../client';
import { createSandboxActivities } from '../activities/sandbox';
import { defaultImageTag, SandboxRuntime, WarmPool } from '../host';
import { getEvents } from '../store';
import type { ScriptTurn } from '../common/types';
import { connectDatabase, connectDocker } from '../workers/services';
import { createWorkers } from '../workers/worker';
import { scratchBlobs, testConfig, uniqueId, workflowBundle } from '../test/helpers/env';
import { TestTemporal } from '../test/helpers/temporal';
import { spawnWorker } from '../test/helpers/processes';
import { formatProfile, profileHistory } from './calls';
import { benchDensity, densityLevels, type DensityLevel } from './density';
import { benchLongSession, type LongSessionFigures } from './long-session';
import { benchRuntimes } from './runtimes';
import { benchSnapshots } from './snapshots';
import { summarize, type Summary, timed } from './stats';

const CALLS = Number(process.env.BENCH_CALLS ?? 200);
const SANDBOXES = Number(process.env.BENCH_SANDBOXES ?? 10);
const RECOVERIES = Number(process.env.BENCH_RECOVERIES ?? 3);
const POOL_SIZE = Number(process.env.BENCH_POOL_SIZE ?? 2);
const DENSITY_LEVELS = process.env.BENCH_DENSITY_LEVELS === 'none' ? [] : densityLevels();
const LONG_STEPS = Number(process.env.BENCH_LONG_STEPS ?? 2000);
const LONG_OUTPUTS = process.env.BENCH_LONG_OUTPUTS === 'none' ? [] : (process.env.BENCH_LONG_OUTPUTS ?? '8192,65536').split(',').map(Number);

type Unit = 'ms' | 'calls/s' | 'MiB' | 'B' | 'x' | 'n';

interface Row {
  figure: string;
  unit?: Unit;
  keel: Summary;
  baseline?: { name: string; summary: Summary };
  ratio?: number;
  target?: string;
  verdict?: 'PASS' | 'MISS';
}

/** A target: its text for the table, and whether a row meets it. */
interface Target {
  text: string;
  met: (row: Row) => boolean;
}

/** Targets from the "Performance" issue, by figure. */
const TARGETS = {
  warmStart: { text: 'p50 <= 100 ms', met: (r: Row) => r.keel.p50 <= 100 },
  echo: {
    text: 'p50 <= 5 ms and >= 10x docker exec',
    met: (r: Row) => r.keel.p50 <= 5 && (r.ratio ?? 0) >= 10,
  },
  // Round two (issue 12): was <= 25 ms in round one.
  durable: { text: 'p50 <= 12 ms', met: (r: Row) => r.keel.p50 <= 12 },
  historyPerCall: { text: '<= 4 KB per call', met: (r: Row) => r.keel.p50 <= 4096 },
  historyFlat: { text: '<= 1.1x steps 10-110', met: (r: Row) => r.keel.p50 <= 1.1 },
  largestRun: { text: '<= 10 MB', met: (r: Row) => r.keel.p50 <= 10 * 1024 * 1024 },
  latencyFlat: { text: '<= 1.2x steps 10-110', met: (r: Row) => r.keel.p50 <= 1.2 },
  recovery: { text: 'p50 <= 3 s', met: (r: Row) => r.keel.p50 <= 3000 },
  throughput50: { text: '>= 150 calls/s at 50 sessions', met: (r: Row) => r.keel.p50 >= 150 },
} satisfies Record<string, Target>;

function judged(row: Row, target?: Target): Row {
  const ratio = row.baseline ? row.baseline.summary.p50 / row.keel.p50 : undefined;
  const withRatio: Row = { unit: 'ms', ...row, ...(ratio !== undefined ? { ratio } : {}) };
  return target ? { ...withRatio, target: target.text, verdict: target.met(withRatio) ? 'PASS' : 'MISS' } : withRatio;
}

/** One number as a Summary (n = 1), for figures that are not distributions. */
function single(value: number): Summary {
  return summarize([value]);
}

/** The baseline: one `docker exec` through the Engine API, as most sandboxes run a command. */
async function dockerExec(docker: Docker, containerId: string, cmd: string[]): Promise<string> {
  const exec = await docker.getContainer(containerId).exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({ hijack: true, stdin: false });
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  await new Promise<void>((resolve, reject) => {
    stream.once('end', () => resolve());
    stream.once('error', reject);
  });
  const info = await exec.inspect();
  if (info.ExitCode !== 0) throw new Error(`docker exec exited ${info.ExitCode}`);
  return Buffer.concat(chunks).toString();
}

async function main() {
  console.log(`keel bench: ${CALLS} calls per latency figure, ${SANDBOXES} sandboxes per start figure, density levels ${DENSITY_LEVELS.join(',') || 'none'}\n`);
  const temporal = await TestTemporal.start();
  const config = testConfig(temporal.address, { KEEL_HOST_ID: uniqueId('bench') });
  const docker = await connectDocker(config);
  const sql = await connectDatabase(config);
  const rows: Row[] = [];

  // 1. Sandbox ready: provisionSandbox until the executor answers. Cold: create + start a container.
  const runtime = new SandboxRuntime(docker);
  const sandbox = createSandboxActivities({ runtime, blobs: scratchBlobs(), config: { hostId: 'bench', hostQueue: 'bench' } });
  const starts: number[] = [];
  for (let i = 0; i < SANDBOXES; i++) {
    const id = uniqueId('bench-start');
    const [ms] = await timed(() => sandbox.provisionSandbox({ sessionId: id }));
    starts.push(ms);
    await sandbox.destroySandbox({ sessionId: id });
  }
  const cold = summarize(starts);
  // Warm: the same call claiming a container from the sandbox worker's warm pool (`poolSize`), refilled between calls.
  const warm = await warmStarts(docker);
  rows.push(
    judged(
      {
        figure: warm.pooled ? 'sandbox ready from the warm pool (provision -> executor answers)' : 'sandbox ready, BENCH_POOL_SIZE=0: cold path',
        keel: summarize(warm.samples),
        baseline: { name: 'cold create+start', summary: cold },
      },
      TARGETS.warmStart,
    ),
    judged({ figure: 'sandbox ready, cold: create+start until executor answers', keel: cold }),
  );

  // 2. Command round trip: executor over the attach stream vs docker exec, same container.
  const sessionId = uniqueId('bench-rt');
  const handle = await sandbox.provisionSandbox({ sessionId });
  const client = runtime.client(handle.containerId);
  const viaExecutor: number[] = [];
  const viaExec: number[] = [];
  for (let i = 0; i < CALLS; i++) {
    // Interleaved, so both see the same machine noise.
    const [a, r] = await timed(() => client.request('shell', { command: 'echo hi', timeoutSec: 30, maxOutput: 1000, storeBytes: 0 }));
    if (!r.ok || String(r.result.output).trim() !== 'hi') throw new Error(`executor answered ${JSON.stringify(r)}`);
    viaExecutor.push(a);
    const [b, out] = await timed(() => dockerExec(docker, handle.containerId, ['sh', '-c', 'echo hi']));
    if (!out.includes('hi')) throw new Error(`docker exec printed ${out}`);
    viaExec.push(b);
  }
  rows.push(
    judged(
      {
        figure: '`echo hi` round trip, host -> sandbox -> host',
        keel: summarize(viaExecutor),
        baseline: { name: 'docker exec (Engine API)', summary: summarize(viaExec) },
      },
      TARGETS.echo,
    ),
  );
  await sandbox.destroySandbox({ sessionId });

  // 3. Full durable tool call: workflow -> activity -> sandbox -> Postgres -> workflow.
  const workers = await createWorkers(config, { workflowBundle: await workflowBundle() });
  const running = workers.run();
  const keel = await KeelClient.connect({ address: config.temporalAddress });
  const script: ScriptTurn[] = [
    { toolCalls: Array.from({ length: CALLS }, () => ({ name: 'shell', input: { command: 'echo hi' } })) },
    { text: 'done' },
  ];
  const id = await keel.start({ task: 'bench', model: { provider: 'scripted', model: 'bench', script }, maxSteps: 5 }, { sessionId: uniqueId('bench-wf') });
  const result = await keel.result(id);
  if (result.status !== 'completed') throw new Error(`bench session ${result.status}: ${result.error}`);
  const results = (await getEvents(sql, id)).filter((e) => e.type === 'tool.result');
  // Each call's cost is the gap between consecutive results: record, schedule, run, record.
  const perCall = results.slice(1).map((e, i) => e.at.getTime() - results[i]!.at.getTime());
  // Where each call's time went (bench/calls.ts): server dispatch, the activity, the workflow task.
  const { events: history } = await keel.temporal.workflow.getHandle(id).fetchHistory();
  console.log(`durable tool call: ${formatProfile({ calls: CALLS, perCall: summarize(perCall), ...profileHistory(history ?? []) })}`);
  rows.push(
    judged(
      {
        figure: 'durable tool call, workflow -> sandbox -> recorded -> workflow',
        keel: summarize(perCall),
        baseline: { name: 'docker exec (Engine API)', summary: summarize(viaExec) },
      },
      TARGETS.durable,
    ),
  );

  await workers.shutdown();
  await running;

  // 4. Fault recovery: from SIGKILL of the worker running a command to the next completed step, with
  // another worker already polling (as in production: what is measured is noticing the dead one, not
  // booting a new one). The command waits for a file the bench creates as it kills, so it ends then.
  const recoveries: number[] = [];
  const env = { TEMPORAL_ADDRESS: temporal.address, KEEL_HOST_ID: uniqueId('bench-recover'), KEEL_REAP_INTERVAL_SEC: '0' };
  for (let i = 0; i < RECOVERIES; i++) {
    const victim = await spawnWorker(env);
    const recoverScript: ScriptTurn[] = [
      { toolCalls: [{ name: 'shell', input: { command: 'while [ ! -e /tmp/go ]; do sleep 0.02; done; echo a >> f' } }] },
      { toolCalls: [{ name: 'shell', input: { command: 'cat f' } }] },
      { text: 'done' },
    ];
    const rid = await keel.start({ task: 'recover', model: { provider: 'scripted', model: 'bench', script: recoverScript } }, { sessionId: uniqueId('bench-recover') });
    while (!(await getEvents(sql, rid)).some((e) => e.type === 'tool.call')) await new Promise((r) => setTimeout(r, 20));
    const rescuer = await spawnWorker(env);
    const placed = (await getEvents(sql, rid)).find((e) => e.type === 'sandbox.provisioned');
    const containerId = String((placed?.data as { containerId?: string } | undefined)?.containerId);
    const killedAt = Date.now();
    await victim.kill('SIGKILL');
    await dockerExec(docker, containerId, ['touch', '/tmp/go']);
    const done = await keel.result(rid);
    if (done.status !== 'completed') throw new Error(`recovery session ${done.status}: ${done.error}`);
    const first = (await getEvents(sql, rid)).find((e) => e.type === 'tool.result');
    recoveries.push(first!.at.getTime() - killedAt);
    console.log(`recovery ${i + 1}: ${await recoveryProfile(keel, rid, killedAt, first!.at.getTime())}`);
    await rescuer.kill('SIGTERM');
  }
  rows.push(judged({ figure: 'fault recovery: worker SIGKILL mid-command -> next completed step', keel: summarize(recoveries) }, TARGETS.recovery));

  // 5. Long sessions: history bytes per tool call and step latency, early and late.
  const long: LongSessionFigures[] = [];
  if (LONG_OUTPUTS.length > 0) {
    const longWorkers = await createWorkers(config, { workflowBundle: await workflowBundle() });
    const longRunning = longWorkers.run();
    try {
      for (const size of LONG_OUTPUTS) {
        console.log(`long session: ${LONG_STEPS} steps of ${size} B outputs`);
        long.push(await benchLongSession({ client: keel, temporal: keel.temporal, sql, steps: LONG_STEPS, outputBytes: size, log: (l) => console.log(l) }));
      }
    } finally {
      await longWorkers.shutdown();
      await longRunning;
    }
    rows.push(...longRows(long));
  }

  await keel.close();
  await runtime.close();
  await sql.end({ timeout: 2 });

  // 6. Density: N sessions at once, one worker process, every container cleaned up.
  let density: DensityLevel[] = [];
  if (DENSITY_LEVELS.length > 0) {
    density = await benchDensity({ temporalAddress: temporal.address, levels: DENSITY_LEVELS, log: (line) => console.log(line) });
    rows.push(...densityRows(density));
  }
  await temporal.down();

  // BENCH_SNAPSHOT_RUNS=0 skips the snapshot figures.
  const snapshotRows = Number(process.env.BENCH_SNAPSHOT_RUNS ?? 5) > 0 ? await benchSnapshots({ docker, log: (line) => console.log(line) }) : [];
  for (const { target, ...row } of snapshotRows) {
    rows.push(judged(row, target && { text: target.text, met: (r) => target.met(r) }));
  }
  // 7. gVisor beside runc (when dockerd has runsc): cold start, round trip, snapshot.
  if (process.env.BENCH_RUNTIMES !== 'none') rows.push(...(await benchRuntimes({ docker, log: (line) => console.log(line) })).map((r) => judged(r)));
  print(rows);
  const out = join(__dirname, 'results');
  mkdirSync(out, { recursive: true });
  const file = join(out, 'latest.json');
  const report = {
    format: 2,
    at: new Date().toISOString(),
    calls: CALLS,
    sandboxes: SANDBOXES,
    machine: { cpus: cpus().length, memGiB: Math.round(totalmem() / 2 ** 30), node: process.version },
    settings: {
      calls: CALLS,
      sandboxes: SANDBOXES,
      poolSize: POOL_SIZE,
      recoveries: RECOVERIES,
      snapshotRuns: Number(process.env.BENCH_SNAPSHOT_RUNS ?? 5),
      manyFiles: Number(process.env.BENCH_MANY_FILES ?? 100_000),
      manyFileBytes: Number(process.env.BENCH_MANY_FILE_BYTES ?? 3072),
      densityLevels: DENSITY_LEVELS,
      densityCalls: Number(process.env.BENCH_DENSITY_CALLS ?? 50),
      longSteps: LONG_STEPS,
      longOutputs: LONG_OUTPUTS,
    },
    rows,
    density,
    long,
  };
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`\nraw results: ${file}`);
}

/**
 * Where a recovery's time went, from the session's history: kill -> the retried tool call completed
 * (heartbeat timeout, retry delay, the executor's journal answer, the snapshot) -> the next workflow task
 * started (after the dead worker's sticky queue timed out) -> the step recorded.
 */
async function recoveryProfile(keel: KeelClient, sessionId: string, killedAt: number, recordedAt: number): Promise<string> {
  const { events } = await keel.temporal.workflow.getHandle(sessionId).fetchHistory();
  const all = events ?? [];
  const tool = all.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'runTool');
  const done = all.find((e) => e.activityTaskCompletedEventAttributes && String(e.activityTaskCompletedEventAttributes.scheduledEventId) === String(tool?.eventId));
  const started = all.find((e) => String(e.activityTaskStartedEventAttributes?.scheduledEventId ?? '') === String(tool?.eventId));
  const doneAt = tsToMs(done?.eventTime);
  const after = all.filter((e) => tsToMs(e.eventTime) >= doneAt);
  const taskStarted = after.find((e) => e.workflowTaskStartedEventAttributes);
  const stickyTimeouts = after.filter((e) => e.workflowTaskTimedOutEventAttributes).length;
  return (
    `last attempt started +${tsToMs(started?.eventTime) - killedAt} ms, ` +
    `tool call completed +${doneAt - killedAt} ms (attempt ${started?.activityTaskStartedEventAttributes?.attempt ?? '?'}), ` +
    `workflow task started +${tsToMs(taskStarted?.eventTime) - killedAt} ms (${stickyTimeouts} sticky timeout), step recorded +${recordedAt - killedAt} ms`
  );
}

/**
 * provisionSandbox until the executor answers, with a warm pool of BENCH_POOL_SIZE, the pool
 * refilled before each call (so each call is a claim, not a create).
 */
async function warmStarts(docker: Docker): Promise<{ pooled: boolean; samples: number[] }> {
  const pooled = POOL_SIZE > 0;
  const runtime = new SandboxRuntime(docker);
  const pool = pooled ? new WarmPool(runtime, { hostId: 'bench-pool', image: defaultImageTag(), size: POOL_SIZE }) : undefined;
  const acts = createSandboxActivities({ runtime, blobs: scratchBlobs(), config: { hostId: 'bench-pool', hostQueue: 'bench-pool' }, ...(pool ? { pools: [pool] } : {}) });
  const samples: number[] = [];
  try {
    for (let i = 0; i < SANDBOXES; i++) {
      await pool?.ready();
      const id = uniqueId('bench-warm');
      const [ms] = await timed(() => acts.provisionSandbox({ sessionId: id }));
      samples.push(ms);
      await acts.destroySandbox({ sessionId: id });
    }
  } finally {
    await runtime.close(); // removes the pool's idle containers
  }
  return { pooled, samples };
}

/** Table rows for the density levels: throughput, step latency, memory per sandbox. */
function densityRows(levels: DensityLevel[]): Row[] {
  const rows: Row[] = [];
  const top = Math.max(...levels.map((l) => l.sessions));
  // One session's throughput, measured in the same run, is the baseline of the others.
  const one = levels.find((l) => l.sessions === 1);
  for (const l of levels) {
    const n = `${l.sessions} session${l.sessions === 1 ? '' : 's'} x ${l.callsPerSession} calls`;
    const all: Target = {
      text: `${l.sessions}/${l.sessions} complete, 0 left`,
      met: () => l.completed === l.sessions && l.toolCalls === l.sessions * l.callsPerSession && l.containersLeft === 0,
    };
    rows.push(
      judged({ figure: `density ${n}: sessions completed`, unit: 'n', keel: single(l.completed) }, l.sessions === top ? all : undefined),
      judged(
        {
          figure: `density ${n}: throughput (tool calls/s)`,
          unit: 'calls/s',
          keel: single(l.callsPerSec),
          ...(one && l !== one ? { baseline: { name: '1 session', summary: single(one.callsPerSec) } } : {}),
        },
        l.sessions === 50 ? TARGETS.throughput50 : undefined,
      ),
      judged({ figure: `density ${n}: step latency (p95 in its column)`, keel: l.step }),
      judged({ figure: `density ${n}: memory per idle / active sandbox (MiB)`, unit: 'MiB', keel: l.memIdleMiB, baseline: { name: 'active (peak)', summary: l.memActiveMiB } }),
    );
  }
  return rows;
}

/** Table rows for the long sessions: history per call early and late, the largest run, step latency early and late. */
function longRows(figures: LongSessionFigures[]): Row[] {
  const rows: Row[] = [];
  for (const f of figures) {
    const out = `${Math.round(f.outputBytes / 1024)} KB outputs`;
    const [e0, e1] = f.early;
    const [l0, l1] = f.late;
    rows.push(
      judged({ figure: `history per tool call, steps ${e0}-${e1} (${out})`, unit: 'B', keel: single(f.bytesPerCallEarly) }, TARGETS.historyPerCall),
      judged({ figure: `history per tool call, steps ${l0}-${l1} (${out})`, unit: 'B', keel: single(f.bytesPerCallLate) }, TARGETS.historyPerCall),
      judged({ figure: `history per call, late / early (${out})`, unit: 'x', keel: single(f.flatness) }, TARGETS.historyFlat),
      judged({ figure: `largest workflow run of ${f.steps} steps, ${f.runs} runs (${out})`, unit: 'B', keel: single(f.largestRunBytes) }, TARGETS.largestRun),
      judged({ figure: `step latency p50, steps ${e0}-${e1} (${out})`, keel: single(f.stepP50EarlyMs) }),
      judged({ figure: `step latency p50, steps ${l0}-${l1} (${out})`, keel: single(f.stepP50LateMs) }),
      judged({ figure: `step latency, late / early (${out})`, unit: 'x', keel: single(f.latencyRatio) }, TARGETS.latencyFlat),
    );
  }
  return rows;
}

function print(rows: Row[]) {
  const fmt = (v: number, unit: Unit = 'ms') => {
    if (!Number.isFinite(v)) return '-';
    if (unit === 'calls/s') return `${v.toFixed(0)}/s`;
    if (unit === 'MiB') return `${v.toFixed(1)} MiB`;
    if (unit === 'B') return v < 10 * 1024 ? `${v.toFixed(0)} B` : v < 10 * 1024 * 1024 ? `${(v / 1024).toFixed(1)} KB` : `${(v / 1024 / 1024).toFixed(1)} MB`;
    if (unit === 'x') return `${v.toFixed(2)}x`;
    if (unit === 'n') return `${v}`;
    return `${v.toFixed(v < 10 ? 2 : v < 1000 ? 1 : 0)} ms`;
  };
  const header = ['figure', 'p50', 'p95', 'p99', 'baseline p50', 'ratio', 'target', 'verdict'];
  const lines = rows.map((r) => {
    const u = r.unit ?? 'ms';
    const one = r.keel.n === 1;
    return [
      r.figure,
      fmt(r.keel.p50, u),
      one ? '' : fmt(r.keel.p95, u),
      one ? '' : fmt(r.keel.p99, u),
      r.baseline ? `${r.baseline.name} ${fmt(r.baseline.summary.p50, u)}` : '',
      r.ratio === undefined ? '' : u === 'calls/s' ? `${(1 / r.ratio).toFixed(2)}x baseline` : u !== 'ms' ? '' : r.ratio >= 1 ? `${r.ratio.toFixed(1)}x faster` : `${(1 / r.ratio).toFixed(1)}x slower`,
      r.target ?? '',
      r.verdict ?? '',
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const right = new Set([1, 2, 3]);
  const line = (cells: string[]) => cells.map((c, i) => (right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  console.log(`\n${line(header)}`);
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const l of lines) console.log(line(l));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
