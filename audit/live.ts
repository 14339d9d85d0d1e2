/**
 * Verify and replay a session from the live services (Postgres, Temporal when it answers, the
 * blob store): what `keel audit verify | replay <id>` and the HTTP API both run.
 */
import type { Client } from '@temporalio/client';
import type { BlobStore } from '../blobs';
import { SessionError } from '../common/errors';
import { getChainedEvents, type Sql } from '../store';
import { loadHistories } from './archive';
import { replaySession, type ReplayOutcome } from './replay';
import { liveEvidence, verifySession, type VerifyReport } from './verify';

/** What the live services need to audit a session; `temporal` undefined: the archive alone. */
export interface LiveServices {
  sql: Sql;
  temporal?: Client;
  blobs: BlobStore;
}

/** `keel audit verify <id>` on the live record. Throws SessionError (not_found) for a session with no events. */
export async function verifyLive(s: LiveServices, sessionId: string): Promise<VerifyReport> {
  const events = await getChainedEvents(s.sql, sessionId);
  if (events.length === 0) throw new SessionError(`no session ${sessionId} in the event log`, 'not_found');
  const histories = await loadHistories(s.sql, s.temporal, s.blobs, sessionId);
  return verifySession(liveEvidence({ sessionId, events, ...(histories ? { histories: histories.runs } : {}), blobs: s.blobs }));
}

/** Replay every run of a session's history against today's workflow code. */
export async function replayLive(s: LiveServices, sessionId: string): Promise<ReplayOutcome> {
  const histories = await loadHistories(s.sql, s.temporal, s.blobs, sessionId);
  if (!histories) return { sessionId, runs: 0, ok: false, failure: { runId: '', message: 'no history: Temporal and the archive both lack it' } };
  return replaySession(sessionId, histories.runs);
}
