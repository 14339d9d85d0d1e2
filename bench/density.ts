/**
 * Density: many scripted sessions at once on one machine, each in its own
 * container, with one worker process running every role.
 *
 * Each level starts N sessions. Their first turn is a long `sleep`, so every
 * session provisions its container and then waits: that is when "idle" memory
 * is read. A message wakes them all at once; each then makes `calls` tool
 * calls (10 per model turn: 70% `echo`, 20% `cat`, 10% `write_file`), while
 * the containers' memory is sampled ("active"). Throughput is tool calls per
 * second from the wake-up to the last result; step latency is, per call, the
 * time from its `tool.call` event to its `tool.result` event (one full durable
 * round: dispatch, sandbox, snapshot, record). Every container is gone at the
 * end of a level, or the level says how many it had to remove.
 *
 *   node --import tsx bench/density.ts
 *
 * Env: BENCH_DENSITY_LEVELS (default "1,10,50,100") concurrent sessions per level,
 *      BENCH_DENSITY_CALLS (default 50) tool calls per session.
 * The worker takes its limits from the usual config (workers/config.ts).
 *
 * `benchDensity()` returns one {@link DensityLevel} per level for bench/run.ts.
 */
import '../test/helpers/quiet';
import { readdirSync, readFileSync } from 'node:fs';
import type Docker from 'dockerode';
import type { Sql } from 'postgres';
import { KeelClient } from '../client';
import type { ScriptTurn, SessionSpec } from '../common/types';
import type { KeelConfig } from '../workers/config';
import { connectDatabase, connectDocker } from '../workers/services';
import { createWorkers } from '../workers/worker';
import { testConfig, uniqueId, workflowBundle } from '../test/helpers/env';
import { TestTemporal } from '../test/helpers/temporal';
import { summarize, type Summary } from './stats';

const MiB = 1 << 20;

/** What one level measured. Times in ms, memory in MiB. */
export interface DensityLevel {
  sessions: number;
  callsPerSession: number;
  /** Tool calls that returned a result (should be sessions × callsPerSession). */
  toolCalls: number;
  /** Sessions that ended `completed`. */
  completed: number;
  /** From the wake-up message to the last tool result. */
  toolPhaseMs: number;
  /** Tool calls per second over the tool phase. */
  callsPerSec: number;
  /** Per call, `tool.call` event to `tool.result` event. */
  step: Summary;
  /** Per session, start request to `sandbox.provisioned` event. */
  provision: Summary;
  /** Working set (cgroup usage minus inactive file cache) of each container while all sessions sleep. */
  memIdleMiB: Summary;
  /** Per container, the highest working set sampled during the tool phase. */
  memActiveMiB: Summary;
  /** Share of the machine's CPU time busy during the tool phase, 0-100. */
  cpuBusyPct: number;
  /** CPU time per tool call during the tool phase, ms, by process name (the five biggest, then `other`). */
  cpuMsPerCall: Record<string, number>;
  /** Containers still there after every session ended (removed by the bench). */
  containersLeft: number;
  /** From the sessions' histories, per tool call: workflow tasks, and workflow tasks that timed out (sticky queue). */
  perCall?: { workflowTasks: number; workflowTaskTimeouts: number };
}

export interface DensityOptions {
  /** A running Temporal server; one is started (and stopped) when absent. */
  temporalAddress?: string;
  /** @default BENCH_DENSITY_LEVELS or [1, 10, 50, 100] */
  levels?: number[];
  /** @default BENCH_DENSITY_CALLS or 50 */
  calls?: number;
  log?: (line: string) => void;
}

/** BENCH_DENSITY_LEVELS, e.g. "1,10", or the default levels. */
export function densityLevels(env = process.env): number[] {
  const raw = env.BENCH_DENSITY_LEVELS ?? '1,10,50,100';
  const levels = raw.split(',').map((s) => Number(s.trim())).filter((n) => Number.isInteger(n) && n > 0);
  if (levels.length === 0) throw new Error(`BENCH_DENSITY_LEVELS must list positive integers, not "${raw}"`);
  return levels;
}

/** The realistic mix: 10 calls per model turn, mostly echo and cat, some writes. */
export function densityScript(calls: number): ScriptTurn[] {
  const turns: ScriptTurn[] = [{ toolCalls: [{ name: 'sleep', input: { seconds: 3600, reason: 'bench: wait for the others' } }] }];
  let turn: NonNullable<ScriptTurn['toolCalls']> = [];
  for (let k = 0; k < calls; k++) {
    const r = k % 10;
    const file = `notes/n${k - r}.txt`;
    if (r === 0) turn.push({ name: 'write_file', input: { path: file, content: `step ${k}\n`.repeat(20) } });
    else if (r === 3 || r === 7) turn.push({ name: 'shell', input: { command: `cat ${file} | wc -l` } });
    else turn.push({ name: 'shell', input: { command: `echo step ${k}` } });
    if (turn.length === 10 || k === calls - 1) {
      turns.push({ toolCalls: turn });
      turn = [];
    }
  }
  turns.push({ text: 'done' });
  return turns;
}

/** Working set of a container from its cgroup (v1 cgroupfs, else v2), or undefined. */
function cgroupWorkingSet(containerId: string): number | undefined {
  const tryRead = (path: string) => {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      return undefined;
    }
  };
  const v1 = `/sys/fs/cgroup/memory/docker/${containerId}`;
  const usage = tryRead(`${v1}/memory.usage_in_bytes`);
  if (usage !== undefined) {
    const inactive = /^total_inactive_file (\d+)$/m.exec(tryRead(`${v1}/memory.stat`) ?? '')?.[1];
    return Number(usage) - Number(inactive ?? 0);
  }
  for (const v2 of [`/sys/fs/cgroup/system.slice/docker-${containerId}.scope`, `/sys/fs/cgroup/docker/${containerId}`]) {
    const current = tryRead(`${v2}/memory.current`);
    if (current === undefined) continue;
    const inactive = /^inactive_file (\d+)$/m.exec(tryRead(`${v2}/memory.stat`) ?? '')?.[1];
    return Number(current) - Number(inactive ?? 0);
  }
  return undefined;
}

/** Working set through the Engine API, where the cgroup files are not visible. */
async function statsWorkingSet(docker: Docker, containerId: string): Promise<number | undefined> {
  try {
    const s = (await docker.getContainer(containerId).stats({ stream: false })) as unknown as {
      memory_stats?: { usage?: number; stats?: Record<string, number> };
    };
    const m = s.memory_stats;
    if (!m?.usage) return undefined;
    return m.usage - (m.stats?.total_inactive_file ?? m.stats?.inactive_file ?? 0);
  } catch {
    return undefined;
  }
}

async function workingSet(docker: Docker, containerId: string): Promise<number | undefined> {
  return cgroupWorkingSet(containerId) ?? (await statsWorkingSet(docker, containerId));
}

/** Busy and total jiffies of the whole machine. */
function cpuTimes(): { busy: number; total: number } {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = fields.reduce((a, b) => a + b, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { busy: total - idle, total };
}

/** CPU jiffies used so far by every live process, summed by process name (`node`, `temporal`, `dockerd`, ...). */
function cpuByProcess(): Map<string, number> {
  const out = new Map<string, number>();
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')).replace(/[/:].*$/, '');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(name, (out.get(name) ?? 0) + Number(fields[11]) + Number(fields[12]));
    } catch {
      // The process exited while we read it.
    }
  }
  return out;
}

/** ms of CPU per tool call by process name between two {@link cpuByProcess} readings (USER_HZ = 100). */
function cpuPerCall(before: Map<string, number>, after: Map<string, number>, calls: number): Record<string, number> {
  const used = [...after].map(([name, t]) => [name, ((t - (before.get(name) ?? 0)) * 10) / Math.max(1, calls)] as const);
  used.sort((a, b) => b[1] - a[1]);
  const top = Object.fromEntries(used.slice(0, 5).map(([k, v]) => [k, Math.round(v * 100) / 100]));
  return { ...top, other: Math.round(used.slice(5).reduce((a, [, v]) => a + v, 0) * 100) / 100 };
}

async function containersOf(docker: Docker, runTag: string): Promise<Docker.ContainerInfo[]> {
  return docker.listContainers({ all: true, filters: { label: ['keel.managed'], name: [runTag] } });
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`density bench: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function runLevel(
  n: number,
  calls: number,
  deps: { keel: KeelClient; sql: Sql; docker: Docker; log: (line: string) => void },
): Promise<DensityLevel> {
  const { keel, sql, docker, log } = deps;
  const runTag = uniqueId(`dens${n}`);
  const spec: SessionSpec = {
    task: 'density bench',
    model: { provider: 'scripted', model: 'bench', script: densityScript(calls) },
    maxSteps: calls + 10,
    sandbox: { idleSuspendSec: 7200 },
  };
  const ids = Array.from({ length: n }, (_, i) => `${runTag}-${i}`);
  const startedAt = new Map<string, number>();
  await Promise.all(
    ids.map(async (id) => {
      startedAt.set(id, Date.now());
      await keel.start(spec, { sessionId: id });
    }),
  );
  const results = ids.map((id) => keel.result(id));
  results.forEach((p) => p.catch(() => undefined));

  // Everyone provisioned and asleep.
  const asleep = async () =>
    Number((await sql`select count(distinct session_id)::int as n from events where session_id = any(${ids}) and type = 'tool.call'`)[0]!.n) === n;
  await waitFor(`${n} sessions to provision`, asleep, 60_000 + n * 2_000);
  const provisioned = await sql<{ session_id: string; at: Date }[]>`
    select session_id, at from events where session_id = any(${ids}) and type = 'sandbox.provisioned'`;
  const provision = summarize(provisioned.map((r) => r.at.getTime() - startedAt.get(r.session_id)!));
  await new Promise((r) => setTimeout(r, 1000));
  const containers = (await containersOf(docker, runTag)).map((c) => c.Id);
  const idle = (await Promise.all(containers.map((id) => workingSet(docker, id)))).filter((v): v is number => v !== undefined);

  // Wake everyone; sample memory until all are done.
  const peak = new Map<string, number>();
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      await Promise.all(
        containers.map(async (id) => {
          const ws = await workingSet(docker, id);
          if (ws !== undefined) peak.set(id, Math.max(peak.get(id) ?? 0, ws));
        }),
      );
      await new Promise((r) => setTimeout(r, 250));
    }
  })();
  const cpu0 = cpuTimes();
  const procs0 = cpuByProcess();
  const wokeAt = Date.now();
  await Promise.all(ids.map((id) => keel.message(id, 'go')));
  const ended = await Promise.all(results);
  const cpu1 = cpuTimes();
  const procs1 = cpuByProcess();
  sampling = false;
  await sampler;

  const events = await sql<{ session_id: string; type: string; at: Date; call_id: string | null; name: string | null }[]>`
    select session_id, type, at, data->>'callId' as call_id, data->>'name' as name
    from events where session_id = any(${ids}) and type in ('tool.call', 'tool.result')`;
  const calledAt = new Map<string, number>();
  for (const e of events) if (e.type === 'tool.call') calledAt.set(`${e.session_id}/${e.call_id}`, e.at.getTime());
  const steps: number[] = [];
  let lastResult = wokeAt;
  for (const e of events) {
    if (e.type !== 'tool.result' || e.name === 'sleep') continue;
    const at = e.at.getTime();
    steps.push(at - calledAt.get(`${e.session_id}/${e.call_id}`)!);
    lastResult = Math.max(lastResult, at);
  }
  const toolPhaseMs = lastResult - wokeAt;

  // Every container should be gone: teardown is the session's last step.
  const left = await containersOf(docker, runTag);
  for (const c of left) await docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => undefined);

  // Where the work went, from the histories: workflow tasks per call, and how many waited out a sticky queue
  // (each such task is replayed from the start of the history by whichever worker takes it).
  let tasks = 0;
  let timeouts = 0;
  for (const id of ids) {
    const { events: history } = await keel.temporal.workflow.getHandle(id).fetchHistory();
    for (const e of history ?? []) {
      if (e.workflowTaskCompletedEventAttributes) tasks++;
      if (e.workflowTaskTimedOutEventAttributes) timeouts++;
    }
  }

  const level: DensityLevel = {
    sessions: n,
    callsPerSession: calls,
    toolCalls: steps.length,
    completed: ended.filter((r) => r.status === 'completed').length,
    toolPhaseMs,
    callsPerSec: steps.length / (toolPhaseMs / 1000),
    step: summarize(steps),
    provision,
    memIdleMiB: summarize(idle.map((b) => b / MiB)),
    memActiveMiB: summarize([...peak.values()].map((b) => b / MiB)),
    cpuBusyPct: (100 * (cpu1.busy - cpu0.busy)) / Math.max(1, cpu1.total - cpu0.total),
    cpuMsPerCall: cpuPerCall(procs0, procs1, steps.length),
    containersLeft: left.length,
    perCall: { workflowTasks: tasks / Math.max(1, steps.length), workflowTaskTimeouts: timeouts / Math.max(1, steps.length) },
  };
  log(
    `density ${n}: ${level.completed}/${n} completed, ${level.toolCalls} calls in ${(toolPhaseMs / 1000).toFixed(1)} s = ` +
      `${level.callsPerSec.toFixed(0)} calls/s, step p50 ${level.step.p50.toFixed(0)} ms p95 ${level.step.p95.toFixed(0)} ms, ` +
      `provision p50 ${provision.p50.toFixed(0)} ms, mem idle ${level.memIdleMiB.p50.toFixed(1)} MiB active ${level.memActiveMiB.p50.toFixed(1)} MiB, ` +
      `cpu ${level.cpuBusyPct.toFixed(0)}% (ms/call: ${Object.entries(level.cpuMsPerCall).map(([k, v]) => `${k} ${v}`).join(', ')}), ` +
      `containers left ${left.length}, per call ${level.perCall!.workflowTasks.toFixed(2)} workflow tasks of which ${level.perCall!.workflowTaskTimeouts.toFixed(3)} timed out`,
  );
  return level;
}

/** Runs every level in order, each with fresh sessions, on one in-process worker. */
export async function benchDensity(opts: DensityOptions = {}): Promise<DensityLevel[]> {
  const levels = opts.levels ?? densityLevels();
  const calls = opts.calls ?? Number(process.env.BENCH_DENSITY_CALLS ?? 50);
  const log = opts.log ?? (() => undefined);
  const temporal = opts.temporalAddress ? undefined : await TestTemporal.start();
  const config: KeelConfig = testConfig(opts.temporalAddress ?? temporal!.address, {
    KEEL_HOST_ID: uniqueId('bench-density'),
    KEEL_REAP_INTERVAL_SEC: '0',
  });
  const docker = await connectDocker(config);
  const sql = await connectDatabase(config);
  const workers = await createWorkers(config, { workflowBundle: await workflowBundle() });
  const running = workers.run();
  const keel = await KeelClient.connect({ address: config.temporalAddress });
  const out: DensityLevel[] = [];
  try {
    for (const n of levels) out.push(await runLevel(n, calls, { keel, sql, docker, log }));
  } finally {
    await keel.close();
    await workers.shutdown();
    await running;
    await sql.end({ timeout: 2 });
    await temporal?.down();
  }
  return out;
}

if (require.main === module) {
  benchDensity({ log: (line) => console.log(line) })
    .then((levels) => console.log(JSON.stringify(levels, null, 2)))
    .catch((err) => {
      console.error(err);
      process.exit(1);
    });
}
