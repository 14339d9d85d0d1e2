/**
 * Removes sandbox containers whose session has ended or never existed: left
 * behind by a host that died mid-teardown, a crashed test, or a deleted workflow.
 *
 * Conservative on purpose: only this host's containers (label keel.host), only
 * ones older than `minAgeSec`, and a session whose status cannot be read is
 * treated as live.
 */
import { Client, WorkflowNotFoundError } from '@temporalio/client';
import type Docker from 'dockerode';
import { reapOrphans, reapStoppedPool } from '../host/reap';
import { every } from './periodic';

export interface ReaperOptions {
  docker: Docker;
  client: Client;
  hostId: string;
  /** Where this host's /workspace filesystems are; leftovers whose volume is gone are removed. @default none */
  diskDir?: string;
  /** Leave younger containers alone (a session may be starting). @default 120 */
  minAgeSec?: number;
  log?: (msg: string) => void;
}

/** Is the session's workflow still running? Unknown counts as yes. */
async function isLive(client: Client, sessionId: string): Promise<boolean> {
  try {
    const d = await client.workflow.getHandle(sessionId).describe();
    return d.status.name === 'RUNNING';
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return false;
    return true;
  }
}

/** One pass. Returns the session ids whose containers were removed. */
export async function reapOnce(opts: ReaperOptions): Promise<string[]> {
  const minAgeSec = opts.minAgeSec ?? 120;
  const reaped = await reapOrphans(opts.docker, (id) => isLive(opts.client, id), { hostId: opts.hostId, minAgeSec, ...(opts.diskDir ? { diskDir: opts.diskDir } : {}) });
  for (const id of reaped) opts.log?.(`reaper: removed the sandbox of ended session ${id}`);
  // Idle pool containers whose worker died stop themselves when their lease runs out; remove those.
  const pool = await reapStoppedPool(opts.docker, opts.hostId, minAgeSec);
  if (pool > 0) opts.log?.(`reaper: removed ${pool} stopped warm-pool containers`);
  return reaped;
}

/** Run `reapOnce` every `intervalSec` until the returned stop function is called. */
export function startReaper(opts: ReaperOptions & { intervalSec: number }): () => void {
  return every(opts.intervalSec, 'reaper', () => reapOnce(opts), opts.log);
}
