/**
 * A second Docker engine on this machine that stands in for a whole sandbox host: its own dockerd with its own
 * data root, exec root, pidfile and socket, a bridge of its own (sandboxes use none; `--bridge none` would make
 * dockerd delete the machine's docker0, which the main engine needs), and every process it starts
 * (containerd, shims, the containers themselves) in one cgroup, so that `lose()` kills the host outright: its
 * containers really die, as when a machine goes down. `up()` again is the machine coming back with its disk.
 *
 * The data root is kept under ~/.cache/keel/cluster/<name>, so the sandbox image is loaded into it once
 * (`docker save | docker load` from the main engine) and later runs find it there. Needs root (cgroups, dockerd).
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { defaultImageTag } from '../../host';

const CGROUP_ROOT = '/sys/fs/cgroup/pids';

export class DockerHost {
  readonly dataDir: string;
  readonly execRoot: string;
  readonly socket: string;
  readonly docker: Docker;

  constructor(readonly name: string) {
    this.dataDir = join(process.env.KEEL_CLUSTER_CACHE ?? join(homedir(), '.cache', 'keel', 'cluster'), name);
    this.execRoot = join('/run/keel-dockerd', name);
    this.socket = join(this.execRoot, 'docker.sock');
    this.docker = new Docker({ socketPath: this.socket });
  }

  /** What a sandbox-host worker on this host sets. */
  get dockerHost(): string {
    return `unix://${this.socket}`;
  }

  private get cgroup(): string {
    return join(CGROUP_ROOT, `keel-${this.name}`);
  }

  /** Start the engine (a leftover one of an earlier run is lost first) and wait until it answers. */
  async up(): Promise<void> {
    if (process.getuid?.() !== 0) throw new Error('a sandbox host of the cluster suite needs root: it runs its own dockerd');
    this.lose();
    mkdirSync(this.cgroup, { recursive: true });
    mkdirSync(this.execRoot, { recursive: true });
    mkdirSync(this.dataDir, { recursive: true });
    // A lost engine leaves its pid files; a stale containerd.pid makes the next dockerd wait for a dead containerd.
    for (const stale of [this.socket, join(this.execRoot, 'dockerd.pid'), join(this.execRoot, 'containerd', 'containerd.pid')]) rmSync(stale, { force: true });
    const log = openSync(join(this.dataDir, 'dockerd.log'), 'a');
    const args = [
      '--data-root', join(this.dataDir, 'data'),
      '--exec-root', this.execRoot,
      '--pidfile', join(this.execRoot, 'dockerd.pid'),
      '--host', this.dockerHost,
      '--bridge', this.ensureBridge(), '--iptables=false', '--ip6tables=false',
      '--cgroup-parent', `/keel-${this.name}`,
    ];
    // The engine joins the host's cgroup before it starts, so containerd and the shims are born in it.
    spawn('sh', ['-c', `echo $$ > ${this.cgroup}/cgroup.procs && exec dockerd "$@"`, 'dockerd', ...args], {
      detached: true,
      stdio: ['ignore', log, log],
    }).unref();
    for (let i = 0; i < 150; i++) {
      if (await this.docker.ping().then(() => true, () => false)) return;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`dockerd for ${this.name} did not answer on ${this.socket}; see ${join(this.dataDir, 'dockerd.log')}`);
  }

  /**
   * The host's own bridge, made once: `kb-<hash of the name>` (an interface name has at most 15 characters)
   * with an address in 10.251.0.0/16. Docker uses it as this engine's default bridge and leaves docker0 alone.
   */
  private ensureBridge(): string {
    const hash = createHash('sha256').update(this.name).digest();
    const bridge = `kb-${hash.subarray(0, 4).toString('hex')}`;
    const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    try {
      ip('link', 'show', bridge);
    } catch {
      ip('link', 'add', 'name', bridge, 'type', 'bridge');
      ip('addr', 'add', `10.251.${hash[4]}.1/24`, 'dev', bridge);
      ip('link', 'set', bridge, 'up');
    }
    return bridge;
  }

  /** Load the sandbox image from the main engine unless this engine has it already. */
  async loadImage(from = new Docker(), tag = defaultImageTag()): Promise<void> {
    if (await this.docker.getImage(tag).inspect().then(() => true, () => false)) return;
    await from.getImage(tag).inspect(); // a clear error if the main engine lacks it too
    execFileSync('sh', ['-c', `docker save "$1" | docker -H "$2" load -q`, 'load', tag, this.dockerHost], { stdio: 'ignore' });
  }

  /** Lose the whole host at once: SIGKILL every process in its cgroup (engine, containerd, shims, containers). */
  lose(): void {
    if (!existsSync(this.cgroup)) return;
    for (let pass = 0; pass < 50; pass++) {
      const pids = this.pids();
      if (pids.length === 0) return;
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone already
        }
      }
      execFileSync('sleep', ['0.1']);
    }
    throw new Error(`processes of sandbox host ${this.name} survived SIGKILL: ${this.pids().join(' ')}`);
  }

  /** Every process in the host's cgroup and the containers' cgroups under it. */
  private pids(dir = this.cgroup): number[] {
    if (!existsSync(dir)) return [];
    const own = readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
    const nested = readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory()).flatMap((d) => this.pids(join(dir, d.name)));
    return [...own, ...nested];
  }
}
