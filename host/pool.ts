/**
 * Warm pool: containers created, started and answering before any session asks,
 * so provisioning claims one (a few Docker metadata calls) instead of creating one.
 *
 * Why claims look the way they do: Docker labels cannot change after create, and
 * every lookup of a session's objects is by label. So a pool container is created
 * with `keel.managed`, `keel.host`, `keel.pool=<host>` and no session, and a claim
 * (1) creates a claim record, an empty volume labelled like the session's own
 * objects plus `keel.claim=<container id>` (label lookups of a session now find it,
 * see `sessionContainers`); (2) tells the executor, which from then on refuses any
 * other session and stops its lease clock; (3) renames the container to the
 * session's container name, which Docker keeps unique (a concurrent provisioning
 * attempt of the same generation gets a 409, as with a created container).
 * In that order, a crash at any point leaves either a pool container that stops
 * itself when its lease runs out, or a claimed one that the session's retry
 * finishes claiming and the reaper can attribute to its session.
 *
 * A pool belongs to one process: only it claims from its in-memory idle list, so
 * no container is claimed twice; the executor's claim check backs that up. Idle
 * containers hold a lease the owner renews; when the owner dies they exit within
 * {@link LEASE_SEC} and `reapStoppedPool` removes them.
 */
import { randomUUID } from 'node:crypto';
import type Docker from 'dockerode';
import { DEFAULT_SANDBOX_RUNTIME, SANDBOX_DEFAULTS } from '../common/defaults';
import { claimContainer, NameTakenError, startAttached, waitReady, type Ping } from './bring-up';
import { ensurePoolVolume, removeContainer, removeVolume } from './inventory';
import { claimVolumeName } from './labels';
import { poolOptions } from './lockdown';
import type { SandboxRuntime } from './runtime';

/** An unclaimed pool container exits this long after its last lease renewal. */
export const LEASE_SEC = 60;
const RENEW_MS = (LEASE_SEC * 1000) / 4;
const REQUEST_TIMEOUT_MS = 5000;
/** After a failed fill, wait this long before the next (the image may be missing, Docker down). */
const RETRY_MS = 5000;

export interface WarmPoolOptions {
  /** Labels the containers (`keel.host`, `keel.pool`). */
  hostId: string;
  image: string;
  /** The Docker runtime of every container (a session asking for another one is not served from the pool). @default runc */
  runtime?: string;
  size: number;
  /** Where the containers' /workspace filesystems (of the default size) are made; unset: plain volumes, no quota. */
  diskDir?: string;
  log?: (msg: string) => void;
}

/** A claimed container: its id and the executor's ping answer. */
export interface Claimed {
  id: string;
  ping: Ping;
}

export class WarmPool {
  private readonly idle: Array<{ id: string; volume: string }> = [];
  private filling = false;
  private closed = false;
  private readonly renew: NodeJS.Timeout;
  private retryTimer: NodeJS.Timeout | undefined;
  private waiters: Array<() => void> = [];
  private readonly log: (msg: string) => void;

  constructor(
    private readonly runtime: SandboxRuntime,
    readonly options: WarmPoolOptions,
  ) {
    this.log = options.log ?? runtime.log;
    this.renew = setInterval(() => void this.renewLeases(), RENEW_MS);
    this.renew.unref();
    // Closing the runtime removes the idle containers: nothing outlives its worker.
    runtime.onClose(() => this.close());
    this.fill();
  }

  get docker(): Docker {
    return this.runtime.docker;
  }

  /** The Docker runtime the pool's containers run under. */
  get ociRuntime(): string {
    return this.options.runtime ?? DEFAULT_SANDBOX_RUNTIME;
  }

  /** Ids of the idle containers, oldest (next to be claimed) first. */
  idleIds(): string[] {
    return this.idle.map((c) => c.id);
  }

  /** Resolves once the pool holds `size` idle containers (tests, benchmarks). */
  ready(): Promise<void> {
    if (this.idle.length >= this.options.size || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /**
   * Give one idle container to (session, generation), or undefined when the pool is
   * empty or the claim failed (the caller then creates a container the cold way).
   */
  async claim(sessionId: string, generation: number): Promise<Claimed | undefined> {
    for (;;) {
      const next = this.idle.shift();
      if (!next) return undefined;
      this.fill();
      try {
        return await this.claimOne(next.id, sessionId, generation);
      } catch (err) {
        if (err instanceof NameTakenError) {
          // Another attempt of this provisioning got there first; this one is ours alone and goes.
          await this.discard(next.id, next.volume, true);
          throw err;
        }
        // Dead (lease ran out, killed) or Docker hiccup: drop it and try the next one.
        this.log(`pool ${this.options.image}: claiming ${next.id.slice(0, 12)} failed (${(err as Error).message}); removing it`);
        await this.discard(next.id, next.volume, true);
      }
    }
  }

  private async claimOne(id: string, sessionId: string, generation: number): Promise<Claimed> {
    await claimContainer(this.runtime, { id, hostId: this.options.hostId }, sessionId, generation);
    return { id, ping: await waitReady(this.runtime.client(id), REQUEST_TIMEOUT_MS) };
  }

  /** Remove a container this pool made, with its claim record when it got one. */
  async discard(id: string, volume: string, withClaim: boolean): Promise<void> {
    this.runtime.forget(id);
    try {
      await removeContainer(this.docker, { id, poolVolume: volume });
      if (withClaim) await this.docker.getVolume(claimVolumeName(id)).remove().catch(() => undefined);
    } catch (err) {
      this.log(`pool ${this.options.image}: removing ${id.slice(0, 12)}: ${(err as Error).message}`);
    }
  }

  /** Stop filling and remove every idle container. Claimed ones belong to their sessions and stay. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.renew);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    for (const w of this.waiters.splice(0)) w();
    const idle = this.idle.splice(0);
    await Promise.all(idle.map((c) => this.discard(c.id, c.volume, false)));
  }

  /** Top the pool up, one container at a time so refills never crowd out a session's commands. */
  private fill(): void {
    if (this.filling || this.closed || this.idle.length >= this.options.size) return;
    this.filling = true;
    void (async () => {
      let failed = false;
      try {
        while (!this.closed && this.idle.length < this.options.size) {
          const made = await this.create();
          if (this.closed) {
            await this.discard(made.id, made.volume, false);
            break;
          }
          this.idle.push(made);
          if (this.idle.length >= this.options.size) for (const w of this.waiters.splice(0)) w();
        }
      } catch (err) {
        failed = true;
        this.log(`pool ${this.options.image}: could not start a container (${(err as Error).message}); retrying in ${RETRY_MS / 1000}s`);
      } finally {
        this.filling = false;
      }
      if (failed && !this.closed) {
        this.retryTimer = setTimeout(() => this.fill(), RETRY_MS);
        this.retryTimer.unref();
      }
    })();
  }

  private async create(): Promise<{ id: string; volume: string }> {
    const token = randomUUID().replace(/-/g, '').slice(0, 16);
    const options = poolOptions({ token, hostId: this.options.hostId, image: this.options.image, runtime: this.ociRuntime, leaseSec: LEASE_SEC });
    const disk = this.options.diskDir ? { dir: this.options.diskDir, sizeMb: SANDBOX_DEFAULTS.diskMb } : undefined;
    const volume = await ensurePoolVolume(this.docker, token, this.options.hostId, disk);
    let id: string | undefined;
    try {
      id = (await this.docker.createContainer(options)).id;
      await startAttached(this.runtime, id);
      return { id, volume };
    } catch (err) {
      if (id) await this.discard(id, volume, false);
      else await removeVolume(this.docker, volume).catch(() => undefined);
      throw err;
    }
  }

  private async renewLeases(): Promise<void> {
    for (const c of [...this.idle]) {
      try {
        const r = await this.runtime.client(c.id).request('lease', {}, { timeoutMs: REQUEST_TIMEOUT_MS });
        if (!r.ok) throw new Error(r.error.message);
      } catch (err) {
        const at = this.idle.indexOf(c);
        if (at < 0) continue; // claimed meanwhile
        this.idle.splice(at, 1);
        this.log(`pool ${this.options.image}: ${c.id.slice(0, 12)} did not renew its lease (${(err as Error).message}); replacing it`);
        await this.discard(c.id, c.volume, false);
        this.fill();
      }
    }
  }
}
