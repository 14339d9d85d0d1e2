/**
 * gVisor beside runc: what `sandbox.runtime: runsc` costs. For each runtime, interleaved so both see the same
 * machine noise: a cold start (provisionSandbox until the executor answers), the `echo hi` round trip over the
 * executor, and a snapshot of 10 MiB in 100 new files. Also what the /workspace disk quota adds to a runc cold
 * start (a plain volume as the baseline). Run by bench/run.ts when dockerd has runsc
 * (BENCH_RUNTIMES=none skips it), or alone: `node --import tsx bench/runtimes.ts`.
 *
 * Env: BENCH_RUNTIME_STARTS (default 5) cold starts per runtime, BENCH_RUNTIME_CALLS (default 100) round trips,
 *      BENCH_RUNTIME_SNAPSHOTS (default 3) snapshots.
 */
import type Docker from 'dockerode';
import { createSandboxActivities } from '../activities/sandbox';
import type { SandboxActivities } from '../common/activities';
import type { SandboxHandle } from '../common/types';
import { knownRuntimes, SandboxRuntime } from '../host';
import { scratchBlobs, uniqueId } from '../test/helpers/env';
import { summarize, timed, type Summary } from './stats';

const STARTS = Number(process.env.BENCH_RUNTIME_STARTS ?? 5);
const CALLS = Number(process.env.BENCH_RUNTIME_CALLS ?? 100);
const SNAPSHOTS = Number(process.env.BENCH_RUNTIME_SNAPSHOTS ?? 3);
const RUNTIMES = ['runc', 'runsc'] as const;

/** One figure, with its baseline (runc, or runc without the disk quota). */
export interface RuntimeRow {
  figure: string;
  keel: Summary;
  baseline: { name: string; summary: Summary };
}

type Samples = Record<(typeof RUNTIMES)[number], number[]>;
const empty = (): Samples => ({ runc: [], runsc: [] });

/** The rows, or none when dockerd has no runsc. */
export async function benchRuntimes(opts: { docker: Docker; log?: (line: string) => void }): Promise<RuntimeRow[]> {
  const log = opts.log ?? (() => undefined);
  if (!(await knownRuntimes(opts.docker)).includes('runsc')) {
    log('runtimes: dockerd has no runsc (KEEL_GVISOR=1 npm run setup); skipped');
    return [];
  }
  const runtime = new SandboxRuntime(opts.docker);
  const acts = createSandboxActivities({ runtime, blobs: scratchBlobs(), config: { hostId: 'bench-rt', hostQueue: 'bench-rt' } });
  const plain = createSandboxActivities({ runtime, blobs: scratchBlobs(), config: { hostId: 'bench-rt', hostQueue: 'bench-rt', diskDir: null } });
  const sessions: string[] = [];
  const up = async (rt: string): Promise<[number, SandboxHandle, string]> => {
    const sessionId = uniqueId(`bench-${rt}`);
    sessions.push(sessionId);
    const [ms, handle] = await timed(() => acts.provisionSandbox({ sessionId, spec: { runtime: rt } }));
    return [ms, handle, sessionId];
  };
  try {
    const starts = empty();
    const noQuota: number[] = [];
    for (let i = 0; i < STARTS; i++) {
      for (const rt of RUNTIMES) {
        const [ms, , sessionId] = await up(rt);
        starts[rt].push(ms);
        await acts.destroySandbox({ sessionId });
      }
      const sessionId = uniqueId('bench-plain');
      sessions.push(sessionId);
      const [ms] = await timed(() => plain.provisionSandbox({ sessionId }));
      noQuota.push(ms);
      await plain.destroySandbox({ sessionId });
    }
    log(`runtimes: ${STARTS} cold starts each`);

    const echo = empty();
    const snaps = empty();
    const live = await Promise.all(RUNTIMES.map(async (rt) => ({ rt, sandbox: await up(rt) })));
    for (let i = 0; i < CALLS; i++) {
      for (const { rt, sandbox } of live) {
        const client = runtime.client(sandbox[1].containerId);
        const [ms, r] = await timed(() => client.request('shell', { command: 'echo hi', timeoutSec: 30, maxOutput: 1000, storeBytes: 0 }));
        if (!r.ok || String(r.result.output).trim() !== 'hi') throw new Error(`${rt} answered ${JSON.stringify(r)}`);
        echo[rt].push(ms);
      }
    }
    log(`runtimes: ${CALLS} round trips each`);
    for (let i = 0; i < SNAPSHOTS; i++) {
      for (const { rt, sandbox } of live) {
        await snapshotMs(acts, sandbox[2], sandbox[1], i).then((ms) => snaps[rt].push(ms));
      }
    }
    log(`runtimes: ${SNAPSHOTS} snapshots each`);
    const row = (figure: string, s: Samples): RuntimeRow => ({ figure, keel: summarize(s.runsc), baseline: { name: 'runc', summary: summarize(s.runc) } });
    return [
      row('runsc: sandbox ready, cold (create+start until executor answers)', starts),
      row('runsc: `echo hi` round trip over the executor', echo),
      row('runsc: snapshot of 10 MiB in 100 new files', snaps),
      {
        figure: 'runc: sandbox ready, cold, with the /workspace disk quota (mkfs + loop mount)',
        keel: summarize(starts.runc),
        baseline: { name: 'no quota (plain volume)', summary: summarize(noQuota) },
      },
    ];
  } finally {
    for (const sessionId of sessions) await acts.destroySandbox({ sessionId }).catch(() => undefined);
    await runtime.close();
  }
}

/** Write 100 files of 100 KiB (new content each round), then time the snapshot that stores them. */
async function snapshotMs(acts: SandboxActivities, sessionId: string, handle: SandboxHandle, round: number): Promise<number> {
  const write = `mkdir -p /workspace/r${round} && for i in $(seq 1 100); do head -c 102400 /dev/urandom > /workspace/r${round}/f$i; done`;
  const r = await acts.runTool({ sessionId, handle, call: { id: uniqueId('w'), name: 'shell', input: { command: write } } });
  if (!r.ok) throw new Error(`writing files failed: ${r.output}`);
  const [ms, info] = await timed(() => acts.snapshotSandbox({ sessionId, handle }));
  if (!info) throw new Error('the snapshot saw no change');
  return ms;
}

if (require.main === module) {
  void (async () => {
    const Docker = (await import('dockerode')).default;
    const rows = await benchRuntimes({ docker: new Docker(), log: (l) => console.log(l) });
    for (const r of rows) {
      console.log(
        `${r.figure}: p50 ${r.keel.p50.toFixed(1)} ms (p95 ${r.keel.p95.toFixed(1)}); ${r.baseline.name} p50 ${r.baseline.summary.p50.toFixed(1)} ms ` +
          `(p95 ${r.baseline.summary.p95.toFixed(1)}); ratio ${(r.keel.p50 / r.baseline.summary.p50).toFixed(2)}x`,
      );
    }
    process.exit(0);
  })();
}
