/**
 * What pooling a custom image (`KEEL_POOL_IMAGES`) buys, and what its check costs at worker start. The image is
 * test/fixtures/custom-image built on this Keel's sandbox image; the baseline is the same image under a name
 * that is not pooled (a cold create and start). Interleaved so both see the same machine noise, with the
 * /workspace disk quota on as a sandbox worker has it. Alone: `node --import tsx bench/pool-images.ts`.
 *
 * Env: BENCH_POOL_IMAGE_STARTS (default 7) starts of each kind, BENCH_POOL_IMAGE_CHECKS (default 7) checks.
 * Prints one JSON object: p50/p95/min/max in ms of each figure and the ratio of the medians.
 */
import { join } from 'node:path';
import Docker from 'dockerode';
import { createSandboxActivities } from '../activities/sandbox';
import { buildCustomImage, poolImageProblems } from '../host/custom-image';
import { DEFAULT_DISK_DIR, defaultImageTag, ensureImage, SandboxRuntime, WarmPool } from '../host';
import { scratchBlobs, uniqueId } from '../test/helpers/env';
import { summarize, timed } from './stats';

const STARTS = Number(process.env.BENCH_POOL_IMAGE_STARTS ?? 7);
const CHECKS = Number(process.env.BENCH_POOL_IMAGE_CHECKS ?? 7);

async function main(): Promise<void> {
  const docker = new Docker();
  const base = defaultImageTag();
  await ensureImage(docker, base);
  const run = uniqueId('bench-pi').toLowerCase();
  const pooled = `keel-custom-bench:${run}`;
  const cold = `keel-custom-bench:${run}-cold`;
  await buildCustomImage(docker, { from: join(__dirname, '..', 'test', 'fixtures', 'custom-image'), base, tag: pooled, network: 'none' });
  await docker.getImage(pooled).tag({ repo: 'keel-custom-bench', tag: `${run}-cold` });
  const runtime = new SandboxRuntime(docker);
  const hostId = run;
  const pool = new WarmPool(runtime, { hostId, image: pooled, size: 1, diskDir: DEFAULT_DISK_DIR });
  const acts = createSandboxActivities({ runtime, blobs: scratchBlobs(), config: { hostId, hostQueue: hostId, diskDir: DEFAULT_DISK_DIR }, pools: [pool] });
  const samples: Record<'warm' | 'cold' | 'check', number[]> = { warm: [], cold: [], check: [] };
  try {
    for (let i = 0; i < STARTS; i++) {
      for (const [kind, image] of [['warm', pooled], ['cold', cold]] as const) {
        await pool.ready();
        const sessionId = `${run}-${kind}-${i}`;
        const [ms, handle] = await timed(() => acts.provisionSandbox({ sessionId, spec: { image } }));
        const info = await docker.getContainer(handle.containerId).inspect();
        // A figure from the wrong path would be worse than none.
        if ((info.Config.Labels['keel.pool'] !== undefined) !== (kind === 'warm')) throw new Error(`${kind} start took the other path`);
        samples[kind].push(ms);
        await acts.destroySandbox({ sessionId });
      }
    }
    for (let i = 0; i < CHECKS; i++) {
      const [ms, problems] = await timed(() => poolImageProblems(docker, [pooled]));
      if (problems.length) throw new Error(problems.join('\n'));
      samples.check.push(ms);
    }
  } finally {
    await runtime.close();
    for (const tag of [pooled, cold]) await docker.getImage(tag).remove().catch(() => undefined);
  }
  const round = (s: ReturnType<typeof summarize>) => ({ n: s.n, p50: Math.round(s.p50), p95: Math.round(s.p95), min: Math.round(s.min), max: Math.round(s.max) });
  const warm = summarize(samples.warm);
  const coldStart = summarize(samples.cold);
  console.log(
    JSON.stringify({
      'custom image, sandbox ready from its warm pool (ms)': round(warm),
      'custom image, cold create+start (ms)': round(coldStart),
      'cold / warm (medians)': +(coldStart.p50 / warm.p50).toFixed(1),
      'KEEL_POOL_IMAGES check of one image at worker start (ms)': round(summarize(samples.check)),
    }),
  );
}

void main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
