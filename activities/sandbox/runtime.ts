import type Docker from 'dockerode';
import { ExecutorClient } from './executor-client';
import type { WarmPool } from './pool';

/**
 * What a sandbox-host worker process holds across activities: the Docker client,
 * one {@link ExecutorClient} (one attach stream) per container, and the warm pool
 * when there is one. Create one per worker process; await {@link close} at shutdown.
 */
export class SandboxRuntime {
  private readonly clients = new Map<string, ExecutorClient>();
  private warm: WarmPool | undefined;

  constructor(
    readonly docker: Docker,
    /** Diagnostics (executor stderr, reconnects). @default discard */
    readonly log: (msg: string) => void = () => {},
  ) {}

  /** The client for a container, created on first use. */
  client(containerId: string): ExecutorClient {
    let client = this.clients.get(containerId);
    if (!client) {
      client = new ExecutorClient(this.docker, containerId, this.log);
      this.clients.set(containerId, client);
    }
    return client;
  }

  /** Drop (and detach) the client of a container, e.g. after removing it. */
  forget(containerId: string): void {
    this.clients.get(containerId)?.close();
    this.clients.delete(containerId);
  }

  /** This runtime's warm pool, if sandbox activities were built with `poolSize > 0`. */
  get pool(): WarmPool | undefined {
    return this.warm;
  }

  /** Used by `createSandboxActivities`: one pool per runtime; returns the one it keeps. */
  adoptPool(make: () => WarmPool): WarmPool {
    this.warm ??= make();
    return this.warm;
  }

  /**
   * Remove the warm pool's idle containers, then detach from every container.
   * Session containers keep running (another worker may carry on with them).
   */
  async close(): Promise<void> {
    await this.warm?.close();
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}
