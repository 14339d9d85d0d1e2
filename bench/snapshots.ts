/**
 * Snapshot and restore speed on a real sandbox and a real blob directory, two
 * workspaces each beside its baseline in the same run:
 *
 * - 100 MB of large files (100 x 1 MB): the first snapshot beside pulling the
 *   same tree out as a tar through the Engine API (`getArchive`, i.e. `docker
 *   cp`, what a naive snapshot costs); a step changing one small file, a step
 *   rewriting 50 MB; restoring into a new container beside provisioning one.
 * - many small files (BENCH_MANY_FILES, default 100,000 of BENCH_MANY_FILE_BYTES,
 *   default 3 KB: ~300 MB, 100 to a folder, like a `node_modules`) beside the same
 *   shape at 100 files: the first snapshot (MB/s, files/s), the snapshot after a
 *   step changing one small file, the bytes that step stores, the executor's
 *   memory growth across those steps, and a restore into a new container.
 *
 *   node --import tsx bench/snapshots.ts        (BENCH_SNAPSHOT_RUNS, default 5; BENCH_MANY_FILES=0 skips the many-files case,
 *                                                BENCH_LARGE_FILES=0 the 100 MB one)
 *
 * `benchSnapshots()` returns rows in bench/run.ts's shape.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { DirBlobStore, type BlobStore } from '../blobs';
import { createSandboxActivities } from '../activities/sandbox';
import { defaultImageTag, ensureImage, SandboxRuntime, takeSnapshot } from '../host';
import type { SandboxHandle } from '../common/types';
import { summarize, type Summary, timed } from './stats';

export interface SnapshotBenchRow {
  figure: string;
  unit?: 'ms' | 'B' | 'MiB';
  keel: Summary;
  baseline?: { name: string; summary: Summary };
  /** The target for this figure, and whether the row meets it. */
  target?: { text: string; met: (row: { keel: Summary; baseline?: { summary: Summary } }) => boolean };
}

const MB = 1 << 20;
const MANY_FILES = Number(process.env.BENCH_MANY_FILES ?? 100_000);
/** 0 skips the 100 MB workspace of large files (to measure only the many-files case). */
const LARGE_FILES = process.env.BENCH_LARGE_FILES !== '0';
const MANY_FILE_BYTES = Number(process.env.BENCH_MANY_FILE_BYTES ?? 3072);
const BASELINE_FILES = 100;

/** Counts what a blob store is asked to store (new bytes only: a blob it already has costs nothing). */
class CountingBlobs {
  stored = 0;
  constructor(readonly inner: BlobStore) {}
  get store(): BlobStore {
    const inner = this.inner;
    return {
      has: (shas) => inner.has(shas),
      put: async (sha, source) => {
        const n = await inner.put(sha, source);
        this.stored += n;
        return n;
      },
      get: (sha) => inner.get(sha),
      putManifest: async (id, text) => {
        const [had] = await inner.has([id]);
        await inner.putManifest(id, text);
        if (!had) this.stored += Buffer.byteLength(text);
      },
      getManifest: (id) => inner.getManifest(id),
      keep: (shas) => inner.keep(shas),
      list: () => inner.list(),
      remove: (sha) => inner.remove(sha),
    };
  }
}

/** Read a directory out of the container as a tar through the Engine API, discarding it. */
async function getArchiveMs(docker: Docker, containerId: string, path: string): Promise<[number, number]> {
  const t0 = performance.now();
  const stream = await docker.getContainer(containerId).getArchive({ path });
  let bytes = 0;
  for await (const chunk of stream) bytes += (chunk as Buffer).length;
  return [performance.now() - t0, bytes];
}

/** The executor's (the container's PID 1) resident memory in MiB, read as root through `docker exec`. */
async function executorRssMiB(docker: Docker, containerId: string): Promise<number> {
  const exec = await docker.getContainer(containerId).exec({ Cmd: ['cat', '/proc/1/status'], AttachStdout: true, User: '0' });
  const stream = await exec.start({ hijack: true, stdin: false });
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  await new Promise<void>((resolve, reject) => {
    stream.once('end', () => resolve());
    stream.once('error', reject);
  });
  const kb = /VmRSS:\s+(\d+) kB/.exec(Buffer.concat(chunks).toString('latin1'))?.[1];
  if (!kb) throw new Error('no VmRSS in /proc/1/status');
  return Number(kb) / 1024;
}

interface Bench {
  docker: Docker;
  counting: CountingBlobs;
  acts: ReturnType<typeof createSandboxActivities>;
  runtime: SandboxRuntime;
  runs: number;
  log: (line: string) => void;
}

interface Workspace {
  files: number;
  bytes: number;
  firstMs: number;
  stepMs: Summary;
  /** The same one-file step with the executor asked to walk every file (the way before inotify). */
  walkStepMs: Summary;
  storedPerStep: Summary;
  /** Executor RSS after the last step minus after the first snapshot, MiB. */
  rssGrowthMiB: number;
  restoreMs: Summary;
}

let seq = 0;
async function sh(b: Bench, sessionId: string, handle: SandboxHandle, command: string): Promise<void> {
  const r = await b.acts.runTool({ sessionId, handle, call: { id: `b${++seq}`, name: 'shell', input: { command, timeoutSec: 900 } } });
  if (!r.ok) throw new Error(`bench command failed: ${r.output}`);
}

/**
 * `files` files of `fileBytes` random bytes, 100 to a folder: the first snapshot, `runs` steps that
 * each change one small file (time, stored bytes, executor memory), and restores of the result.
 */
async function benchWorkspace(b: Bench, files: number, fileBytes: number): Promise<Workspace> {
  const sessionId = `bench-many-${files}-${process.pid}-${Date.now().toString(36)}`;
  const blobs = b.counting.store;
  try {
    const handle = await b.acts.provisionSandbox({ sessionId, spec: { memoryMb: 2048 } });
    const client = b.runtime.client(handle.containerId);
    b.log(`writing ${files} files of ${fileBytes} B`);
    await sh(
      b,
      sessionId,
      handle,
      `python3 -c 'import os\nfor i in range(${files}):\n d="/workspace/m/d%d" % (i // 100)\n if i % 100 == 0: os.makedirs(d)\n open("%s/f%d" % (d, i), "wb").write(os.urandom(${fileBytes}))' && echo 0 > /workspace/small.txt`,
    );
    await new Promise((r) => setTimeout(r, 2200)); // out of the racy-clean window
    const [firstMs, first] = await timed(() => takeSnapshot(client, blobs));
    let parent = first.info?.id;
    const rss0 = await executorRssMiB(b.docker, handle.containerId);
    b.log(`  first snapshot: ${firstMs.toFixed(0)} ms, ${first.executor.files} files, manifest ${first.executor.manifestBytes} B, executor ${rss0.toFixed(1)} MiB`);
    const steps: number[] = [];
    const walks: number[] = [];
    const detections = new Set<string>();
    const stored: number[] = [];
    let rss = rss0;
    const rssSteps: number[] = [];
    for (let i = 0; i < b.runs; i++) {
      await sh(b, sessionId, handle, `echo ${i + 1} > /workspace/small.txt`);
      const before = b.counting.stored;
      const [ms, out] = await timed(() => takeSnapshot(client, blobs, parent));
      if (!out.info || out.info.modified !== 1) throw new Error(`a one-file step snapshot reported ${JSON.stringify(out.info)}`);
      parent = out.info.id;
      steps.push(ms);
      walks.push(out.executor.durationMs);
      detections.add(out.executor.detection ?? 'walk (an executor without change detection)');
      stored.push(b.counting.stored - before);
      rss = await executorRssMiB(b.docker, handle.containerId);
      rssSteps.push(rss);
    }
    b.log(
      `  one-file step: p50 ${summarize(steps).p50.toFixed(1)} ms (of which the executor's change detection, diff and answer ${summarize(walks).p50} ms; ` +
        `found by ${[...detections].join(', ')}), ` +
        `stores ${summarize(stored).p50} B, executor ${rss0.toFixed(1)} MiB -> ${rssSteps.map((m) => m.toFixed(1)).join(', ')} MiB after each step`,
    );
    // The same steps with the executor asked to walk the whole tree (what every step did before change
    // detection), after the steps above so that their memory figure is not the walk's.
    const walkSteps: number[] = [];
    const walkExec: number[] = [];
    for (let i = 0; i < b.runs; i++) {
      await sh(b, sessionId, handle, `echo w${i + 1} > /workspace/small.txt`);
      const [wms, wout] = await timed(() => takeSnapshot(client, blobs, parent, { walk: true }));
      if (!wout.info || wout.info.modified !== 1) throw new Error(`a one-file step snapshot (walk) reported ${JSON.stringify(wout.info)}`);
      parent = wout.info.id;
      walkSteps.push(wms);
      walkExec.push(wout.executor.durationMs);
    }
    b.log(`  the same step with a full walk: p50 ${summarize(walkSteps).p50.toFixed(1)} ms (executor ${summarize(walkExec).p50} ms)`);
    if (!parent) throw new Error('no snapshot to restore');
    const restores: number[] = [];
    // A restore of 100,000 files takes minutes before this work: one of them is enough to read.
    for (let i = 0; i < (files > 10_000 ? 1 : Math.max(1, Math.min(b.runs, 3))); i++) {
      const generation = i + 2;
      const [ms] = await timed(() => b.acts.provisionSandbox({ sessionId, spec: { memoryMb: 2048 }, generation, restoreFrom: parent }));
      restores.push(ms);
      await b.acts.destroySandbox({ sessionId, belowGeneration: generation + 1 });
    }
    b.log(`  restore: p50 ${summarize(restores).p50.toFixed(0)} ms`);
    return {
      files,
      bytes: files * fileBytes,
      firstMs,
      stepMs: summarize(steps),
      walkStepMs: summarize(walkSteps),
      storedPerStep: summarize(stored),
      rssGrowthMiB: rss - rss0,
      restoreMs: summarize(restores),
    };
  } finally {
    await b.acts.destroySandbox({ sessionId }).catch(() => undefined);
  }
}

/** Rows for the many-files workspace beside the same shape at {@link BASELINE_FILES} files. */
function manyFilesRows(many: Workspace, few: Workspace): SnapshotBenchRow[] {
  const n = many.files.toLocaleString('en-US');
  const size = `${(many.bytes / MB).toFixed(0)} MB`;
  const base = (summary: Summary) => ({ name: `${BASELINE_FILES} files`, summary });
  const perSec = (count: number, ms: number) => count / (ms / 1000);
  return [
    {
      figure: `snapshot after a step changing 1 small file, ${n} files / ${size}`,
      keel: many.stepMs,
      baseline: base(few.stepMs),
      target: { text: 'p50 <= 20 ms and <= 2x 100 files', met: (r) => r.keel.p50 <= 20 && r.keel.p50 <= 2 * (r.baseline?.summary.p50 ?? 0) },
    },
    {
      figure: `  the same step, full walk (every file stat'ed, as before), ${n} files`,
      keel: many.walkStepMs,
      baseline: base(few.walkStepMs),
    },
    {
      figure: `first snapshot, ${n} files / ${size} (${perSec(many.bytes / MB, many.firstMs).toFixed(0)} MB/s, ${perSec(many.files, many.firstMs).toFixed(0)} files/s)`,
      keel: summarize([many.firstMs]),
      baseline: base(summarize([few.firstMs])),
      target: { text: '<= 3 s', met: (r) => r.keel.p50 <= 3000 },
    },
    {
      figure: `stored per one-file step, ${n} files`,
      unit: 'B',
      keel: many.storedPerStep,
      baseline: base(few.storedPerStep),
    },
    {
      figure: `executor memory growth over ${many.stepMs.n} one-file steps, ${n} files`,
      unit: 'MiB',
      keel: summarize([many.rssGrowthMiB]),
      baseline: base(summarize([few.rssGrowthMiB])),
    },
    {
      figure: `provision + restore, ${n} files / ${size}`,
      keel: many.restoreMs,
      baseline: base(few.restoreMs),
    },
  ];
}

/** Runs the snapshot figures; `log` gets progress lines. */
export async function benchSnapshots(opts: { runs?: number; docker?: Docker; log?: (line: string) => void } = {}): Promise<SnapshotBenchRow[]> {
  const runs = opts.runs ?? Number(process.env.BENCH_SNAPSHOT_RUNS ?? 5);
  const log = opts.log ?? (() => undefined);
  const docker = opts.docker ?? new Docker();
  const image = defaultImageTag();
  await ensureImage(docker, image, log);
  const blobDir = mkdtempSync(join(tmpdir(), 'keel-bench-blobs-'));
  const counting = new CountingBlobs(new DirBlobStore(blobDir));
  const blobs = counting.store;
  const runtime = new SandboxRuntime(docker);
  const acts = createSandboxActivities({ runtime, blobs, config: { hostId: 'bench', hostQueue: 'bench', defaultImage: image } });
  const b: Bench = { docker, counting, acts, runtime, runs, log };
  const sessionId = `bench-snap-${process.pid}-${Date.now().toString(36)}`;
  const rows: SnapshotBenchRow[] = [];
  try {
    if (LARGE_FILES) {
      const handle = await acts.provisionSandbox({ sessionId, spec: { memoryMb: 2048 } });
      const client = runtime.client(handle.containerId);
      log('writing a 100 MB workspace (100 files of 1 MB)');
      await sh(b, sessionId, handle, 'mkdir -p /workspace/data && cd /workspace/data && for i in $(seq 1 100); do head -c 1048576 /dev/urandom > f$i.bin; done; echo 0 > /workspace/small.txt');
      await new Promise((r) => setTimeout(r, 2200)); // out of the racy-clean window

      const archive: number[] = [];
      for (let i = 0; i < runs; i++) archive.push((await getArchiveMs(docker, handle.containerId, '/workspace'))[0]);
      const archiveSummary = summarize(archive);

      const [firstMs, first] = await timed(() => takeSnapshot(client, blobs));
      const firstMBps = (first.executor.bytes / MB) / (firstMs / 1000);
      rows.push({
        figure: `first snapshot, 100 MB of large files (hash + upload all: ${firstMBps.toFixed(0)} MB/s)`,
        keel: summarize([firstMs]),
        baseline: { name: 'getArchive /workspace (tar, 100 MB)', summary: archiveSummary },
        target: { text: '>= 250 MB/s and <= getArchive', met: (r) => firstMBps >= 250 && r.keel.p50 <= (r.baseline?.summary.p50 ?? 0) },
      });
      log(`first snapshot: ${firstMs.toFixed(0)} ms, ${firstMBps.toFixed(0)} MB/s out of the container; getArchive p50 ${archiveSummary.p50.toFixed(0)} ms`);
      let parent = first.info?.id;

      const small: number[] = [];
      for (let i = 0; i < runs; i++) {
        await sh(b, sessionId, handle, `echo ${i + 1} > /workspace/small.txt`);
        const [ms, out] = await timed(() => takeSnapshot(client, blobs, parent));
        if (out.executor.bytesHashed > 64 * 1024) log(`warning: small step hashed ${out.executor.bytesHashed} B`);
        parent = out.info?.id ?? parent;
        small.push(ms);
      }
      rows.push({
        figure: 'snapshot after a step changing 1 small file of 100 MB',
        keel: summarize(small),
        baseline: { name: 'getArchive /workspace (tar, 100 MB)', summary: archiveSummary },
      });

      const big: number[] = [];
      for (let i = 0; i < runs; i++) {
        await sh(b, sessionId, handle, 'cd /workspace/data && for i in $(seq 1 50); do head -c 1048576 /dev/urandom > f$i.bin; done');
        const [ms, out] = await timed(() => takeSnapshot(client, blobs, parent));
        parent = out.info?.id ?? parent;
        big.push(ms);
      }
      rows.push({
        figure: 'snapshot after a step rewriting 50 MB of 100 MB',
        keel: summarize(big),
        baseline: { name: 'getArchive /workspace (tar, 100 MB)', summary: archiveSummary },
      });
      log(`50 MB step: p50 ${summarize(big).p50.toFixed(0)} ms (${(50 / (summarize(big).p50 / 1000)).toFixed(0)} MB/s hashed + uploaded)`);

      if (!parent) throw new Error('no snapshot to restore');
      const restores: number[] = [];
      for (let i = 0; i < Math.max(1, Math.min(runs, 3)); i++) {
        const generation = i + 2;
        const [ms] = await timed(() => acts.provisionSandbox({ sessionId, spec: { memoryMb: 2048 }, generation, restoreFrom: parent }));
        restores.push(ms);
        await acts.destroySandbox({ sessionId, belowGeneration: generation + 1 });
      }
      const empty: number[] = [];
      for (let i = 0; i < Math.max(1, Math.min(runs, 3)); i++) {
        const generation = 10 + i;
        const [ms] = await timed(() => acts.provisionSandbox({ sessionId, generation }));
        empty.push(ms);
        await acts.destroySandbox({ sessionId, belowGeneration: generation + 1 });
      }
      rows.push({
        figure: 'provision + restore a 100 MB snapshot (new container)',
        keel: summarize(restores),
        baseline: { name: 'provision without restore', summary: summarize(empty) },
        target: { text: 'p50 <= 500 ms', met: (r) => r.keel.p50 <= 500 },
      });
      log(`restore: p50 ${summarize(restores).p50.toFixed(0)} ms`);
      await acts.destroySandbox({ sessionId });
    }

    if (MANY_FILES > 0) {
      const few = await benchWorkspace(b, BASELINE_FILES, MANY_FILE_BYTES);
      const many = await benchWorkspace(b, MANY_FILES, MANY_FILE_BYTES);
      rows.push(...manyFilesRows(many, few));
    }
  } finally {
    await acts.destroySandbox({ sessionId }).catch(() => undefined);
    runtime.close();
    rmSync(blobDir, { recursive: true, force: true });
  }
  return rows;
}

if (require.main === module) {
  benchSnapshots({ log: (line) => console.error(line) })
    .then((rows) => {
      const fmt = (v: number, unit: SnapshotBenchRow['unit'] = 'ms'): string =>
        unit === 'B' ? `${v.toFixed(0)} B` : unit === 'MiB' ? `${v.toFixed(1)} MiB` : `${v.toFixed(v < 10 ? 2 : 0)} ms`;
      console.log(`${'figure'.padEnd(78)} ${'p50'.padStart(11)} ${'max'.padStart(11)}   baseline p50   target`);
      for (const r of rows) {
        const base = r.baseline ? `${r.baseline.name}: ${fmt(r.baseline.summary.p50, r.unit)}` : '';
        const verdict = r.target ? `${r.target.text}: ${r.target.met(r) ? 'PASS' : 'MISS'}` : '';
        console.log(`${r.figure.padEnd(78)} ${fmt(r.keel.p50, r.unit).padStart(11)} ${fmt(r.keel.max, r.unit).padStart(11)}   ${base}   ${verdict}`);
      }
    })
    .catch((err: unknown) => {
      console.error(err);
      process.exit(1);
    });
}
