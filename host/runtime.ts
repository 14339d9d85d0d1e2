import type Docker from 'dockerode';
import { ExecutorClient } from './executor-client';

/**
 * What a sandbox-host worker process holds across activities: the Docker client,
 * one {@link ExecutorClient} (one attach stream) per container, and whatever else
 * must go when the worker does (a warm pool registers itself with {@link onClose}).
 * Create one per worker process; await {@link close} at shutdown.
 */
export class SandboxRuntime {
  private readonly clients = new Map<string, ExecutorClient>();
  private readonly closers: Array<() => Promise<void>> = [];

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

  /** Run `fn` first when the runtime closes (e.g. a warm pool removing its idle containers). */
  onClose(fn: () => Promise<void>): void {
    this.closers.push(fn);
  }

  /**
   * Run the close hooks, then detach from every container. Session containers keep
   * running (another worker may carry on with them).
   */
  async close(): Promise<void> {
    for (const fn of this.closers.splice(0)) await fn();
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}
