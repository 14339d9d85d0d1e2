/**
 * Which Docker runtimes (runc, runsc) a sandbox may run under. dockerd knows a
 * runtime only once /etc/docker/daemon.json registers it and dockerd has re-read
 * that file, so a session that asks for another one gets an error naming the fix
 * before any container is made, not Docker's "unknown or invalid runtime name".
 */
import type Docker from 'dockerode';

/** The runtimes this dockerd has registered (`docker info` → Runtimes), sorted. */
export async function knownRuntimes(docker: Docker): Promise<string[]> {
  return Object.keys(await runtimeArgs(docker)).sort();
}

/**
 * The gVisor registrations setup writes into the "runtimes" of /etc/docker/daemon.json (scripts/setup.sh has the
 * same list): runsc for sessions without network, runsc-net for sessions with an egress allowlist (see
 * GVISOR_NET_RUNTIME in lockdown.ts). Neither has `--oci-seccomp`: Debian's runsc then fails every thread creation.
 */
export const GVISOR_RUNTIMES: Record<string, { runtimeArgs: string[] }> = {
  runsc: { runtimeArgs: ['--network=none'] },
  'runsc-net': { runtimeArgs: ['--network=host'] },
};

/** The runtimes this dockerd has registered, with their runtimeArgs (`docker info` → Runtimes). */
export async function runtimeArgs(docker: Docker): Promise<Record<string, string[]>> {
  const info = (await docker.info()) as { Runtimes?: Record<string, { runtimeArgs?: string[] }> };
  return Object.fromEntries(Object.entries(info.Runtimes ?? {}).map(([name, r]) => [name, r?.runtimeArgs ?? []]));
}

/** How to make dockerd know `runtime`: setup does it for gVisor; anything else is registered by hand. */
export function runtimeFix(runtime: string): string {
  const reload = 'then send dockerd SIGHUP (kill -HUP $(pidof dockerd)); no restart is needed';
  const gvisor = GVISOR_RUNTIMES[runtime];
  if (gvisor) {
    const entries = Object.entries(GVISOR_RUNTIMES)
      .map(([name, r]) => `"${name}": {"path": "/usr/bin/runsc", "runtimeArgs": ${JSON.stringify(r.runtimeArgs)}}`)
      .join(', ');
    return `install gVisor and register it: KEEL_GVISOR=1 npm run setup (apt package runsc; adds ${entries} to the "runtimes" of /etc/docker/daemon.json, ${reload})`;
  }
  return `add "${runtime}": {"path": "<its binary>"} to the "runtimes" of /etc/docker/daemon.json, ${reload}`;
}

/**
 * Remembers the runtimes dockerd is known to have. A runtime once seen stays (dockerd does not forget one
 * without a restart); one not seen is asked for again each time, so registering it needs no worker restart.
 */
export class RuntimeCheck {
  private readonly seen = new Set<string>();

  constructor(private readonly docker: Docker) {}

  /** Undefined when dockerd knows `runtime`; otherwise the runtimes it does know. */
  async missing(runtime: string): Promise<string[] | undefined> {
    if (this.seen.has(runtime)) return undefined;
    const known = await knownRuntimes(this.docker);
    for (const r of known) this.seen.add(r);
    return this.seen.has(runtime) ? undefined : known;
  }
}
