/**
 * A tenant's view of sessions: one it does not own is "not found", exactly like one that does
 * not exist, so a key learns nothing about other tenants' sessions.
 */
import { WorkflowNotFoundError } from '@temporalio/client';
import type { z } from 'zod';
import type { KeelClient } from '../client';
import { SessionError } from '../common/errors';
import type { EventRow } from '../common/events';
import { getSession, type SessionRow, type Sql } from '../store';
import type { Event, Session } from './schemas';

/** A session row as the API shows it. */
export function sessionJson(r: SessionRow): z.infer<typeof Session> {
  return {
    id: r.id,
    tenant: r.tenant,
    task: r.task,
    model: r.model,
    status: r.status,
    createdAt: r.createdAt.toISOString(),
    updatedAt: r.updatedAt?.toISOString() ?? null,
    endedAt: r.endedAt?.toISOString() ?? null,
    result: (r.result as unknown as Record<string, unknown> | null) ?? null,
  };
}

/** An event as the API and the stream show it. */
export function eventJson(e: EventRow): z.infer<typeof Event> {
  return { seq: e.seq, type: e.type, at: e.at.toISOString(), data: e.data as unknown as Record<string, unknown> };
}

/**
 * The session `id` if `tenant` owns it, else SessionError `not_found`. A session too new to have
 * recorded its first event is found by the tenant its start put in the workflow's memo.
 */
export async function ownedSession(sql: Sql, client: KeelClient, tenant: string, id: string): Promise<z.infer<typeof Session>> {
  const row = await getSession(sql, id);
  if (row) {
    if (row.tenant === tenant) return sessionJson(row);
    throw notFound(id);
  }
  const described = await client.temporal.workflow
    .getHandle(id)
    .describe()
    .catch((err: unknown) => {
      if (err instanceof WorkflowNotFoundError) return undefined;
      throw err;
    });
  if (!described || described.memo?.tenant !== tenant) throw notFound(id);
  return {
    id,
    tenant,
    task: '',
    model: '',
    status: described.status.name === 'RUNNING' ? 'starting' : described.status.name.toLowerCase(),
    createdAt: described.startTime.toISOString(),
    updatedAt: null,
    endedAt: described.closeTime?.toISOString() ?? null,
    result: null,
  };
}

export function notFound(id: string): SessionError {
  return new SessionError(`no session ${id}`, 'not_found');
}
