/**
 * Bringing a sandbox container up, and giving a warm-pool container to a
 * session: the one path both the sandbox activities and the warm pool use.
 *
 * Attach before start, so nothing the executor says is missed; then wait until
 * it answers a ping, whose answer names the snapshot it was restored from.
 *
 * A claim is three steps, in an order that is safe to crash in (see `pool.ts`):
 * a claim record, the executor's own claim (it then refuses any other session),
 * and a rename to the session's container name, which Docker keeps unique.
 */
import type Docker from 'dockerode';
import { statusOf } from './docker-errors';
import { ExecutorTimeoutError, type ExecutorClient } from './executor-client';
import { recordClaim } from './inventory';
import { containerName } from './labels';
import type { SandboxRuntime } from './runtime';

/** What the executor answers to `ping`. */
export type Ping = Record<string, unknown>;

const READY_TIMEOUT_MS = 30_000;
const PING_TIMEOUT_MS = 2000;
const CLAIM_TIMEOUT_MS = 5000;

/** Wait until the executor answers a ping (it may still be starting); its answer. */
export async function waitReady(client: ExecutorClient, timeoutMs = READY_TIMEOUT_MS): Promise<Ping> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const r = await client.request('ping', {}, { timeoutMs: PING_TIMEOUT_MS });
      if (r.ok) return r.result;
    } catch (err) {
      if (!(err instanceof ExecutorTimeoutError)) throw err;
    }
    if (Date.now() > deadline) throw new Error(`executor in ${client.containerId.slice(0, 12)} did not answer ping within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Attach to a created container, start it (a concurrent start is fine) and wait until its executor answers. */
export async function startAttached(runtime: SandboxRuntime, containerId: string): Promise<Ping> {
  const client = runtime.client(containerId);
  await client.connect({ requireRunning: false });
  try {
    await runtime.docker.getContainer(containerId).start();
  } catch (err) {
    if (statusOf(err) !== 304) throw err; // 304: already started by a concurrent attempt
  }
  return waitReady(client);
}

/** The session's container name is taken (normally by a concurrent attempt of the same generation). */
export class NameTakenError extends Error {
  constructor(readonly containerId: string, readonly containerName: string) {
    super(`container name ${containerName} is taken`);
    this.name = 'NameTakenError';
  }
}

/**
 * Give pool container `id` to (session, generation), or finish a claim a crashed attempt began.
 * Idempotent. Throws {@link NameTakenError} when another container holds the session's name.
 */
export async function claimContainer(
  runtime: SandboxRuntime,
  c: { id: string; name?: string; hostId: string },
  sessionId: string,
  generation: number,
): Promise<void> {
  const docker: Docker = runtime.docker;
  await recordClaim(docker, c.id, sessionId, c.hostId, generation);
  const answer = await runtime.client(c.id).request('claim', { session: sessionId, generation }, { timeoutMs: CLAIM_TIMEOUT_MS });
  if (!answer.ok) throw new Error(`pool container ${c.id.slice(0, 12)} refused the claim: ${answer.error.code}: ${answer.error.message}`);
  const name = containerName(sessionId, generation);
  if (c.name === name) return;
  try {
    await docker.getContainer(c.id).rename({ name });
  } catch (err) {
    if (statusOf(err) === 409) throw new NameTakenError(c.id, name);
    throw err;
  }
}
