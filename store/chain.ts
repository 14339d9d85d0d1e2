/**
 * The event log's hash chain: one chain per session, so that a changed,
 * removed, inserted or reordered event is detectable.
 *
 * Each event's hash is sha256 over the previous event's hash (hex; empty for the
 * first event of the chain), a newline, and the event's canonical content:
 * RFC 8785 JSON of `{sessionId, seq, type, data}`, with `data` as stored (after
 * `storable()`). The server-set `at` is left out (it is when the row was written,
 * not part of what happened). Canonical JSON sorts keys, so the jsonb column's own
 * key order never matters.
 *
 * The head after each batch the workflow writes is also returned to the workflow
 * by the event-writing activity, so it lands in the Temporal history: rewriting
 * Postgres alone, even consistently, is then detectable (see audit/verify.ts).
 */
import { createHash } from 'node:crypto';
import { canonicalJson } from '../common/canonical-json';
import type { EventType } from '../common/events';

/** What is hashed of an event. */
export interface ChainedContent {
  sessionId: string;
  seq: number;
  type: EventType;
  data: unknown;
}

/** The canonical text of an event's content (what its hash covers, after the previous hash). */
export function canonicalEvent(e: ChainedContent): string {
  return canonicalJson({ sessionId: e.sessionId, seq: e.seq, type: e.type, data: e.data });
}

/** The chain hash of an event given the hash before it (undefined for the first event of a chain). */
export function chainHash(prev: string | undefined, e: ChainedContent): string {
  return createHash('sha256')
    .update(`${prev ?? ''}\n`)
    .update(canonicalEvent(e))
    .digest('hex');
}

export type { ChainHead } from '../common/events';
