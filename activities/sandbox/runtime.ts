import type Docker from 'dockerode';
import { ExecutorClient } from './executor-client';

/**
 * What a sandbox-host worker process holds across activities: the Docker client
 * and one {@link ExecutorClient} (one attach stream) per container.
 * Create one per worker process; call {@link close} at shutdown.
 */
export class SandboxRuntime {
  private readonly clients = new Map<string, ExecutorClient>();

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

  /** Detach from every container. The containers keep running. */
  close(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}
