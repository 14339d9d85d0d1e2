/**
 * `npm run bench`: Keel's speed, each figure next to its baseline measured in
 * the same run. Prints a table and writes the raw numbers to
 * bench/results/latest.json. Medians and ratios, not single runs: the machines
 * are noisy. Timings are never asserted; this is not a test.
 *
 * Env: BENCH_CALLS (default 200) tool calls per latency figure,
 *      BENCH_SANDBOXES (default 10) containers for the start-time figure,
 *      BENCH_RECOVERIES (default 3) worker kills for the recovery figure,
 *      BENCH_SNAPSHOT_RUNS (default 5) runs of each snapshot figure.
 */
import '../test/helpers/quiet';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type Docker from 'dockerode';
import { KeelClient } from '../client';
import { createSandboxActivities, SandboxRuntime } from '../activities/sandbox';
import { getEvents } from '../activities/store';
import type { ScriptTurn } from '../common/types';
import { connectDatabase, connectDocker } from '../workers/services';
import { createWorkers } from '../workers/worker';
import { testConfig, uniqueId, workflowBundle } from '../test/helpers/env';
import { TestTemporal } from '../test/helpers/temporal';
import { spawnWorker } from '../test/helpers/processes';
import { benchSnapshots } from './snapshots';
import { summarize, type Summary } from './stats';

const CALLS = Number(process.env.BENCH_CALLS ?? 200);
const SANDBOXES = Number(process.env.BENCH_SANDBOXES ?? 10);
const RECOVERIES = Number(process.env.BENCH_RECOVERIES ?? 3);

interface Row {
  figure: string;
  keel: Summary;
  baseline?: { name: string; summary: Summary };
}

async function timed<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t0 = performance.now();
  const value = await fn();
  return [performance.now() - t0, value];
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
  console.log(`keel bench: ${CALLS} calls per latency figure, ${SANDBOXES} sandboxes for start time\n`);
  const temporal = await TestTemporal.start();
  const config = testConfig(temporal.address, { KEEL_HOST_ID: uniqueId('bench') });
  const docker = await connectDocker(config);
  const sql = await connectDatabase(config);
  const rows: Row[] = [];

  // 1. Sandbox create + start, until the executor answers.
  const runtime = new SandboxRuntime(docker);
  const sandbox = createSandboxActivities({ runtime, config: { hostId: 'bench', hostQueue: 'bench' } });
  const starts: number[] = [];
  for (let i = 0; i < SANDBOXES; i++) {
    const id = uniqueId('bench-start');
    const [ms] = await timed(() => sandbox.provisionSandbox({ sessionId: id }));
    starts.push(ms);
    await sandbox.destroySandbox({ sessionId: id });
  }
  rows.push({ figure: 'sandbox create+start (until executor answers)', keel: summarize(starts) });

  // 2. Command round trip: executor over the attach stream vs docker exec, same container.
  const sessionId = uniqueId('bench-rt');
  const handle = await sandbox.provisionSandbox({ sessionId });
  const client = runtime.client(handle.containerId);
  const viaExecutor: number[] = [];
  const viaExec: number[] = [];
  for (let i = 0; i < CALLS; i++) {
    // Interleaved, so both see the same machine noise.
    const [a, r] = await timed(() => client.request('shell', { command: 'echo hi' }));
    if (!r.ok || String(r.result.output).trim() !== 'hi') throw new Error(`executor answered ${JSON.stringify(r)}`);
    viaExecutor.push(a);
    const [b, out] = await timed(() => dockerExec(docker, handle.containerId, ['sh', '-c', 'echo hi']));
    if (!out.includes('hi')) throw new Error(`docker exec printed ${out}`);
    viaExec.push(b);
  }
  rows.push({
    figure: '`echo hi` round trip, host -> sandbox -> host',
    keel: summarize(viaExecutor),
    baseline: { name: 'docker exec (Engine API)', summary: summarize(viaExec) },
  });
  await sandbox.destroySandbox({ sessionId });

  // 3. Full durable tool call: workflow -> activity -> sandbox -> Postgres -> workflow.
  const workers = await createWorkers(config, { workflowBundle: await workflowBundle() });
  const running = workers.run();
  const keel = await KeelClient.connect(config);
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
  rows.push({
    figure: 'durable tool call, workflow -> sandbox -> recorded -> workflow',
    keel: summarize(perCall),
    baseline: { name: 'docker exec (Engine API)', summary: summarize(viaExec) },
  });

  await workers.shutdown();
  await running;

  // 4. Fault recovery: from SIGKILL of the worker during a command to the next completed step.
  const recoveries: number[] = [];
  const env = { TEMPORAL_ADDRESS: temporal.address, KEEL_HOST_ID: uniqueId('bench-recover'), KEEL_REAP_INTERVAL_SEC: '0' };
  for (let i = 0; i < RECOVERIES; i++) {
    const victim = await spawnWorker(env);
    const recoverScript: ScriptTurn[] = [
      { toolCalls: [{ name: 'shell', input: { command: 'sleep 2; echo a >> f' } }] },
      { toolCalls: [{ name: 'shell', input: { command: 'cat f' } }] },
      { text: 'done' },
    ];
    const rid = await keel.start({ task: 'recover', model: { provider: 'scripted', model: 'bench', script: recoverScript } }, { sessionId: uniqueId('bench-recover') });
    while (!(await getEvents(sql, rid)).some((e) => e.type === 'tool.call')) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 500));
    const killedAt = Date.now();
    await victim.kill('SIGKILL');
    const rescuer = await spawnWorker(env);
    await keel.result(rid);
    const first = (await getEvents(sql, rid)).find((e) => e.type === 'tool.result');
    recoveries.push(first!.at.getTime() - killedAt);
    await rescuer.kill('SIGTERM');
  }
  rows.push({ figure: 'fault recovery: worker SIGKILL -> next completed step', keel: summarize(recoveries) });

  await keel.close();
  runtime.close();
  await sql.end({ timeout: 2 });
  await temporal.down();

  rows.push(...(await benchSnapshots({ docker, log: (line) => console.log(line) })));
  print(rows);
  const out = join(__dirname, 'results');
  mkdirSync(out, { recursive: true });
  const file = join(out, 'latest.json');
  writeFileSync(file, `${JSON.stringify({ at: new Date().toISOString(), calls: CALLS, sandboxes: SANDBOXES, rows }, null, 2)}\n`);
  console.log(`\nraw results: ${file}`);
}

function print(rows: Row[]) {
  const ms = (v: number) => `${v.toFixed(v < 10 ? 2 : 1)} ms`;
  console.log(`${'figure'.padEnd(64)} ${'p50'.padStart(10)} ${'p95'.padStart(10)} ${'p99'.padStart(10)}   baseline p50 (ratio)`);
  for (const r of rows) {
    const ratio = r.baseline ? r.baseline.summary.p50 / r.keel.p50 : 0;
    const verdict = ratio >= 1 ? `${ratio.toFixed(1)}x faster` : `${(1 / ratio).toFixed(1)}x slower`;
    const base = r.baseline ? `${r.baseline.name}: ${ms(r.baseline.summary.p50)} (${verdict})` : '';
    console.log(`${r.figure.padEnd(64)} ${ms(r.keel.p50).padStart(10)} ${ms(r.keel.p95).padStart(10)} ${ms(r.keel.p99).padStart(10)}   ${base}`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
