/**
 * `keel doctor`: is every service Keel needs there, and if not, what fixes it.
 */
import { connectTemporal } from '../client/connection';
import { ServiceError } from '../common/errors';
import type Docker from 'dockerode';
import { listCustomImages, poolImageProblems } from '../host/custom-image';
import { defaultImageTag, imageExists } from '../host/image';
import { GVISOR_NET_RUNTIME } from '../host/lockdown';
import { describePools, planPools } from '../host/pool-images';
import { GVISOR_RUNTIMES, runtimeArgs, runtimeFix } from '../host/runtimes';
import type { KeelConfig } from '../workers/config';
import { resolveTemporalCli } from '../workers/dev-server';
import { connectDatabase, connectDocker } from '../workers/services';
import { print } from './terminal';

export interface Check {
  name: string;
  ok: boolean;
  /** `warn` checks do not fail `keel doctor`. */
  level: 'ok' | 'warn' | 'error';
  detail: string;
  fix?: string;
}

async function check(name: string, fn: () => Promise<string>): Promise<Check> {
  try {
    return { name, ok: true, level: 'ok', detail: await fn() };
  } catch (err) {
    if (err instanceof ServiceError) return { name, ok: false, level: 'error', detail: err.message.replace(`${err.service}: `, '').replace(/\. Fix: .*$/, ''), fix: err.fix };
    return { name, ok: false, level: 'error', detail: (err as Error).message };
  }
}

/**
 * The runtimes dockerd knows (gVisor's with their flags); an error when it lacks the worker's default, a warning
 * when it lacks gVisor, or has runsc without the networked registration (runsc-net) or with other flags than setup's.
 */
async function runtimeCheck(docker: Docker, runtime: string): Promise<Check> {
  const name = 'Runtimes';
  let known: Record<string, string[]>;
  try {
    known = await runtimeArgs(docker);
  } catch (err) {
    return { name, ok: false, level: 'error', detail: `docker info failed: ${(err as Error).message}` };
  }
  const names = Object.keys(known).sort();
  const shown = names.map((n) => (GVISOR_RUNTIMES[n] ? `${n} (${known[n]!.join(' ') || 'no flags'})` : n));
  const detail = `dockerd knows ${shown.join(', ')}; sessions default to ${runtime} (KEEL_SANDBOX_RUNTIME)`;
  if (!names.includes(runtime)) return { name, ok: false, level: 'error', detail, fix: runtimeFix(runtime) };
  if (!names.includes('runsc')) return { name, ok: true, level: 'warn', detail: `${detail}; no gVisor (runsc) for hostile code`, fix: runtimeFix('runsc') };
  if (!names.includes(GVISOR_NET_RUNTIME)) {
    return { name, ok: true, level: 'warn', detail: `${detail}; no ${GVISOR_NET_RUNTIME}: gVisor sessions with an egress allowlist cannot start`, fix: runtimeFix(GVISOR_NET_RUNTIME) };
  }
  const differ = Object.entries(GVISOR_RUNTIMES).filter(([n, r]) => JSON.stringify(known[n]) !== JSON.stringify(r.runtimeArgs));
  if (differ.length) {
    return { name, ok: true, level: 'warn', detail: `${detail}; ${differ.map(([n, r]) => `${n} should have ${r.runtimeArgs.join(' ')}`).join('; ')}`, fix: runtimeFix('runsc') };
  }
  return { name, ok: true, level: 'ok', detail };
}

export async function runDoctor(config: KeelConfig): Promise<Check[]> {
  const checks: Check[] = [];
  checks.push(
    await check('Temporal', async () => {
      const conn = await connectTemporal(config.temporalAddress);
      await conn.close();
      return `reachable at ${config.temporalAddress}, namespace ${config.temporalNamespace}`;
    }),
  );
  checks.push(await check('Temporal CLI', async () => resolveTemporalCli(config)));
  checks.push(
    await check('Postgres', async () => {
      const sql = await connectDatabase(config);
      const [row] = await sql<{ v: number }[]>`select max(version)::int as v from schema_migrations`;
      await sql.end({ timeout: 2 });
      return `reachable, schema version ${row?.v}`;
    }),
  );
  let docker: Awaited<ReturnType<typeof connectDocker>> | undefined;
  checks.push(
    await check('Docker', async () => {
      docker = await connectDocker(config);
      const v = await docker.version();
      return `Engine ${v.Version} (API ${v.ApiVersion})`;
    }),
  );
  const tag = config.sandboxImage ?? defaultImageTag();
  if (docker) {
    const present = await imageExists(docker, tag).catch(() => false);
    checks.push(
      present
        ? { name: 'Sandbox image', ok: true, level: 'ok', detail: tag }
        : { name: 'Sandbox image', ok: false, level: 'error', detail: `${tag} is not built`, fix: `npx keel image --build (or bash sandbox/build.sh ${tag})` },
    );
    checks.push(await runtimeCheck(docker, config.sandboxRuntime));
    const custom = await customImagesCheck(docker, tag);
    if (custom) checks.push(custom);
    checks.push(await poolsCheck(docker, config));
  } else {
    checks.push({ name: 'Sandbox image', ok: false, level: 'error', detail: 'cannot check without Docker', fix: 'fix Docker first' });
  }
  const env = config.env;
  const providers = [
    env.ANTHROPIC_API_KEY ? 'anthropic' : undefined,
    env.OPENAI_API_KEY ? 'openai' : undefined,
    env.OPENAI_COMPATIBLE_BASE_URL ? `openai-compatible (${env.OPENAI_COMPATIBLE_BASE_URL})` : undefined,
  ].filter(Boolean);
  checks.push(
    providers.length
      ? { name: 'Model', ok: true, level: 'ok', detail: `configured: scripted, ${providers.join(', ')}` }
      : {
          name: 'Model',
          ok: true,
          level: 'warn',
          detail: 'only the scripted model is available',
          fix: 'set ANTHROPIC_API_KEY, OPENAI_API_KEY or OPENAI_COMPATIBLE_BASE_URL for the worker',
        },
  );
  return checks;
}

export function printChecks(checks: Check[]): void {
  for (const c of checks) {
    const mark = c.level === 'ok' ? 'ok  ' : c.level === 'warn' ? 'warn' : 'FAIL';
    print(`${mark}  ${c.name.padEnd(14)} ${c.detail}`);
    if (c.fix) print(`      ${''.padEnd(14)} fix: ${c.fix}`);
  }
}

/**
 * Custom sandbox images (`keel image build`, label `keel.base`): a warning for each built on another base
 * than this Keel's, whose executor may not speak this worker's protocol. None when there are none.
 */
async function customImagesCheck(docker: Docker, base: string): Promise<Check | undefined> {
  const images = await listCustomImages(docker).catch(() => []);
  if (!images.length) return undefined;
  const stale = images.filter((i) => i.base !== base);
  const name = (i: { tags: string[]; id: string }): string => i.tags[0] ?? i.id.slice(7, 19);
  if (!stale.length) return { name: 'Custom images', ok: true, level: 'ok', detail: `${images.length} on ${base}: ${images.map(name).join(', ')}` };
  return {
    name: 'Custom images',
    ok: true,
    level: 'warn',
    detail: `${stale.length} of ${images.length} built on another sandbox image than ${base}: ${stale.map((i) => `${name(i)} (on ${i.base})`).join(', ')}`,
    fix: 'rebuild them: npx keel image build --from <their Dockerfile> --tag <their name>',
  };
}

/**
 * The warm pools a sandbox worker with this config keeps (`KEEL_POOL_SIZE`, `KEEL_POOL_IMAGES`), and the
 * check the worker runs at start on each named image: an error for each that would stop it.
 */
export async function poolsCheck(docker: Docker, config: KeelConfig): Promise<Check> {
  const defaultImage = config.sandboxImage ?? defaultImageTag();
  const plan = planPools(defaultImage, config.poolSize, config.poolImages);
  const detail = describePools(plan, defaultImage);
  const problems = await poolImageProblems(docker, plan.filter((p) => p.named).map((p) => p.image));
  if (!problems.length) return { name: 'Warm pools', ok: true, level: 'ok', detail };
  return {
    name: 'Warm pools',
    ok: false,
    level: 'error',
    detail: `${detail}; a sandbox worker would refuse to start:\n${problems.map((p) => `- ${p}`).join('\n')}`,
    fix: 'as given for each image',
  };
}
