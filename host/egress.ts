/**
 * The network of a networked session: an internal Docker network of its own, and
 * an egress proxy container (sandbox/egress_proxy.py) that is its only way out.
 *
 * - The session's network is `internal` (no route off the bridge) and its bridge
 *   has no IPv4 address on the Docker host (`inhibit_ipv4`): without that, a
 *   container on an internal network still reaches every host service listening
 *   on 0.0.0.0 through the bridge's address. Its only members are the sandbox
 *   (each generation in turn) and the proxy, so sessions never see each other.
 * - The proxy also sits on {@link EGRESS_NETWORK}, a bridge shared by every
 *   proxy (no traffic between its members), and connects out from there to
 *   what the session's allowlist names, public addresses only.
 * - Its configuration (allowlist, credentials to inject, CAs, pinned names) goes over
 *   its stdin, so no credential is in its Env, its Cmd or the sandbox.
 * - It keeps what it refused until {@link Egress.drain} fetches it (after each tool
 *   call), and goes with the session's containers ({@link removeEgress}).
 */
import type Docker from 'dockerode';
import type { EgressRule, NetworkRefusal, NetworkReport } from '../common/types';
import { startAttached, waitReady } from './bring-up';
import { ignore404, statusOf } from './docker-errors';
import { ExecutorGoneError } from './executor-client';
import { egressLabels, egressNames, LABEL_EGRESS, LABEL_HOST } from './labels';
import { EGRESS_PROXY_HOST, proxyOptions, type EgressAttachment } from './lockdown';
import type { SandboxRuntime } from './runtime';

/** The bridge every egress proxy connects out from. */
export const EGRESS_NETWORK = 'keel-egress';
const CONTROL_TIMEOUT_MS = 10_000;

/** What the worker's configuration adds to every proxy; never part of a session's spec. */
export interface EgressSettings {
  /**
   * Headers the proxy adds to plain-HTTP requests for a host (`{ "api.example.com": { "Authorization": "…" } }`),
   * when the session allows that host; such requests go upstream over TLS (port 443 unless the URL names one).
   * A CONNECT tunnel is opaque and gets none.
   * @default none
   */
  headers: Record<string, Record<string, string>>;
  /** More CA certificates (PEM) the proxy trusts for that TLS, besides the image's. @default none */
  ca?: string;
  /**
   * Test-only: names the proxy does not look up but connects to at this address, even a private or loopback
   * one (e.g. a local server standing in for the internet). Sessions must still allow the name. @default none
   */
  resolve: Record<string, string>;
}


/** The networks and proxies of one sandbox-host worker's networked sessions. */
export class Egress {
  /** Proxy container id by session, or null when the session has none; filled on first use. */
  private readonly proxies = new Map<string, string | null>();
  private shared: Promise<unknown> | undefined;

  constructor(
    private readonly runtime: SandboxRuntime,
    private readonly settings: EgressSettings,
  ) {}

  /**
   * The session's network and a running, configured proxy on it; idempotent (a retry, or a later
   * generation of the sandbox, finds them). `image` must hold sandbox/egress_proxy.py.
   */
  async ensure(args: { sessionId: string; hostId: string; image: string; allow: Array<Required<EgressRule>> }): Promise<EgressAttachment> {
    const { docker } = this.runtime;
    const names = egressNames(args.sessionId);
    const labels = egressLabels(args.sessionId, args.hostId);
    this.shared ??= ensureEgressNetwork(docker).catch((err: unknown) => {
      this.shared = undefined;
      throw err;
    });
    await this.shared;
    await createNetwork(docker, { Name: names.network, Labels: labels, Internal: true, Options: { 'com.docker.network.bridge.inhibit_ipv4': 'true' } });

    let id: string;
    try {
      id = (await docker.createContainer(proxyOptions({ name: names.proxy, labels, image: args.image, network: EGRESS_NETWORK }))).id;
    } catch (err) {
      if (statusOf(err) !== 409) throw err;
      id = (await docker.getContainer(names.proxy).inspect()).Id;
    }
    let info = await docker.getContainer(id).inspect();
    if (!info.NetworkSettings.Networks[names.network]) {
      await docker.getNetwork(names.network).connect({ Container: id, EndpointConfig: { Aliases: [EGRESS_PROXY_HOST] } });
    }
    if (info.State.Running) await waitReady(this.runtime.client(id));
    else await startAttached(this.runtime, id);
    info = await docker.getContainer(id).inspect();
    const proxyAddress = info.NetworkSettings.Networks[names.network]?.IPAddress;
    if (!proxyAddress) throw new Error(`egress proxy ${names.proxy} has no address on ${names.network}`);
    const answer = await this.runtime
      .client(id)
      .request('configure', { listen: proxyAddress, allow: args.allow, ...this.settings }, { timeoutMs: CONTROL_TIMEOUT_MS });
    if (!answer.ok) throw new Error(`egress proxy ${names.proxy} refused its configuration: ${answer.error.code}: ${answer.error.message}`);
    this.proxies.set(args.sessionId, id);
    return { network: names.network };
  }

  /** Note that a session has no network (saves a lookup per session in {@link drain}). */
  none(sessionId: string): void {
    this.proxies.set(sessionId, null);
  }

  /**
   * What the session's proxy refused since the last drain; undefined when nothing was, the session has no proxy, or it
   * cannot be asked (gone, stuck): what it held is then lost, which is said in the worker's log. Never throws:
   * a report must not fail the tool call it follows.
   */
  async drain(sessionId: string): Promise<NetworkReport | undefined> {
    try {
      let id = this.proxies.get(sessionId);
      if (id === undefined) {
        try {
          id = (await this.runtime.docker.getContainer(egressNames(sessionId).proxy).inspect()).Id;
        } catch (err) {
          if (statusOf(err) !== 404) throw err;
          id = null;
        }
        this.proxies.set(sessionId, id);
      }
      if (id === null) return undefined;
      const answer = await this.runtime.client(id).request('drain', {}, { timeoutMs: CONTROL_TIMEOUT_MS });
      if (!answer.ok) throw new Error(`${answer.error.code}: ${answer.error.message}`);
      const report = toReport(answer.result);
      return report.refused.length > 0 || report.dropped > 0 ? report : undefined;
    } catch (err) {
      if (err instanceof ExecutorGoneError) this.forget(sessionId);
      this.runtime.log(`egress proxy of session ${sessionId}: refusals not collected: ${(err as Error).message}`);
      return undefined;
    }
  }

  /** Drop what this worker knows of the session's proxy (after removing it). */
  forget(sessionId: string): void {
    const id = this.proxies.get(sessionId);
    if (id) this.runtime.forget(id);
    this.proxies.delete(sessionId);
  }
}

/** Most refusals one report carries (the proxy keeps at most 64 between reports). */
const MAX_REPORTED = 64;

/**
 * The proxy's answer as a report whose every field is what its type says and storable in Postgres: the
 * proxy parses hostile requests, so what it says is checked like input.
 */
function toReport(result: Record<string, unknown>): NetworkReport {
  const text = (v: unknown, max: number): string => String(v ?? '').replace(/[^\x21-\x7e]/g, '?').slice(0, max);
  const count = (v: unknown): number => (Number.isInteger(v) && (v as number) >= 0 ? (v as number) : 0);
  const list = Array.isArray(result.refused) ? (result.refused as Array<Record<string, unknown>>) : [];
  const refused = list.slice(0, MAX_REPORTED).map(
    (r): NetworkRefusal => ({
      host: text(r.host, 255),
      port: count(r.port),
      reason: text(r.reason, 32),
      ...(r.address !== undefined ? { address: text(r.address, 64) } : {}),
      count: Math.max(1, count(r.count)),
      at: text(r.at, 40),
    }),
  );
  return { refused, dropped: count(result.dropped) + Math.max(0, list.length - MAX_REPORTED) };
}

/** Create {@link EGRESS_NETWORK} unless it exists; its gateway address (the Docker host, as proxies reach it). */
export async function ensureEgressNetwork(docker: Docker): Promise<string | undefined> {
  await createNetwork(docker, {
    Name: EGRESS_NETWORK,
    Labels: { 'keel.egress-shared': 'true' },
    // Proxies have no business with each other.
    Options: { 'com.docker.network.bridge.enable_icc': 'false' },
  });
  return (await docker.getNetwork(EGRESS_NETWORK).inspect()).IPAM?.Config?.[0]?.Gateway;
}

/** Create a network unless one of that name exists (Docker only refuses duplicates when asked to). */
async function createNetwork(docker: Docker, options: Docker.NetworkCreateOptions): Promise<void> {
  try {
    await docker.createNetwork({ CheckDuplicate: true, Driver: 'bridge', ...options });
  } catch (err) {
    if (statusOf(err) !== 409) throw err;
  }
}

/**
 * Remove a session's egress proxy and network (after its sandbox containers, which hold endpoints on it).
 * Idempotent; true when anything was removed.
 */
export async function removeEgress(docker: Docker, sessionId: string, onContainer: (id: string) => void = () => {}): Promise<boolean> {
  const names = egressNames(sessionId);
  let removed = false;
  try {
    const info = await docker.getContainer(names.proxy).inspect();
    onContainer(info.Id);
    removed = await ignore404(docker.getContainer(info.Id).remove({ force: true }));
  } catch (err) {
    if (statusOf(err) !== 404) throw err;
  }
  return (await ignore404(docker.getNetwork(names.network).remove())) || removed;
}

/** Sessions with an egress network on this host (or every host), and when it was made (seconds since the epoch). */
export async function egressSessions(docker: Docker, hostId?: string): Promise<Array<{ sessionId: string; created: number }>> {
  const label = [LABEL_EGRESS, ...(hostId ? [`${LABEL_HOST}=${hostId}`] : [])];
  const networks = await docker.listNetworks({ filters: { label } });
  return networks.flatMap((n) => {
    const sessionId = n.Labels?.[LABEL_EGRESS];
    return sessionId ? [{ sessionId, created: Date.parse(n.Created) / 1000 }] : [];
  });
}
