/**
 * Snapshot and restore speed on a real sandbox and a real blob directory:
 * a step that changes one small file of a 100 MB workspace, one that rewrites
 * 50 MB of it, and restoring the 100 MB into a new container. The baseline for
 * snapshots is what a naive snapshot costs: pulling the whole workspace out as
 * a tar through the Engine API (`getArchive`, i.e. `docker cp`).
 *
 *   node --import tsx bench/snapshots.ts        (BENCH_SNAPSHOT_RUNS, default 5)
 *
 * `benchSnapshots()` returns rows in bench/run.ts's shape.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { DirBlobStore } from '../blobs';
import { createSandboxActivities } from '../activities/sandbox';
import { defaultImageTag, ensureImage, SandboxRuntime, takeSnapshot } from '../host';
import type { SandboxHandle } from '../common/types';
import { summarize, type Summary, timed } from './stats';

export interface SnapshotBenchRow {
  figure: string;
  keel: Summary;
  baseline?: { name: string; summary: Summary };
}

const MB = 1 << 20;

/** Read a directory out of the container as a tar through the Engine API, discarding it. */
async function getArchiveMs(docker: Docker, containerId: string, path: string): Promise<[number, number]> {
  const t0 = performance.now();
  const stream = await docker.getContainer(containerId).getArchive({ path });
  let bytes = 0;
  for await (const chunk of stream) bytes += (chunk as Buffer).length;
  return [performance.now() - t0, bytes];
}

/** Runs the snapshot figures; `log` gets progress lines. */
export async function benchSnapshots(opts: { runs?: number; docker?: Docker; log?: (line: string) => void } = {}): Promise<SnapshotBenchRow[]> {
  const runs = opts.runs ?? Number(process.env.BENCH_SNAPSHOT_RUNS ?? 5);
  const log = opts.log ?? (() => undefined);
  const docker = opts.docker ?? new Docker();
  const image = defaultImageTag();
  await ensureImage(docker, image, log);
  const blobDir = mkdtempSync(join(tmpdir(), 'keel-bench-blobs-'));
  const blobs = new DirBlobStore(blobDir);
  const runtime = new SandboxRuntime(docker);
  const acts = createSandboxActivities({ runtime, blobs, config: { hostId: 'bench', hostQueue: 'bench', defaultImage: image } });
  const sessionId = `bench-snap-${process.pid}-${Date.now().toString(36)}`;
  const rows: SnapshotBenchRow[] = [];
  let seq = 0;
  const sh = async (handle: SandboxHandle, command: string): Promise<void> => {
    const r = await acts.runTool({ sessionId, handle, call: { id: `b${++seq}`, name: 'shell', input: { command, timeoutSec: 600 } } });
    if (!r.ok) throw new Error(`bench command failed: ${r.output}`);
  };
  try {
    const handle = await acts.provisionSandbox({ sessionId, spec: { memoryMb: 2048 } });
    const client = runtime.client(handle.containerId);
    log('writing a 100 MB workspace (100 files of 1 MB)');
    await sh(handle, 'mkdir -p /workspace/data && cd /workspace/data && for i in $(seq 1 100); do head -c 1048576 /dev/urandom > f$i.bin; done; echo 0 > /workspace/small.txt');
    await new Promise((r) => setTimeout(r, 2200)); // out of the racy-clean window

    const [firstMs, first] = await timed(() => takeSnapshot(client, blobs));
    const uploadMBps = (first.info?.uploadedBytes ?? 0) / MB / (firstMs / 1000);
    rows.push({ figure: 'first snapshot, 100 MB workspace (hash + upload all)', keel: summarize([firstMs]) });
    log(`first snapshot: ${firstMs.toFixed(0)} ms, ${uploadMBps.toFixed(0)} MB/s out of the container`);
    let parent = first.info?.id;

    const archive: number[] = [];
    for (let i = 0; i < runs; i++) archive.push((await getArchiveMs(docker, handle.containerId, '/workspace'))[0]);
    const archiveSummary = summarize(archive);

    const small: number[] = [];
    for (let i = 0; i < runs; i++) {
      await sh(handle, `echo ${i + 1} > /workspace/small.txt`);
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
      await sh(handle, 'cd /workspace/data && for i in $(seq 1 50); do head -c 1048576 /dev/urandom > f$i.bin; done');
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
    });
    log(`restore: p50 ${summarize(restores).p50.toFixed(0)} ms`);
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
      const ms = (v: number): string => `${v.toFixed(v < 10 ? 2 : 0)} ms`;
      console.log(`${'figure'.padEnd(58)} ${'p50'.padStart(9)} ${'min'.padStart(9)} ${'max'.padStart(9)}   baseline p50`);
      for (const r of rows) {
        const base = r.baseline ? `${r.baseline.name}: ${ms(r.baseline.summary.p50)}` : '';
        console.log(`${r.figure.padEnd(58)} ${ms(r.keel.p50).padStart(9)} ${ms(r.keel.min).padStart(9)} ${ms(r.keel.max).padStart(9)}   ${base}`);
      }
    })
    .catch((err: unknown) => {
      console.error(err);
      process.exit(1);
    });
}
