/**
 * Reading a session's Temporal histories as evidence: the chain heads the
 * event-writing activity returned (anchors), and what every model and tool
 * activity returned, in order. Works on histories fetched from Temporal or
 * read back from an archive or a bundle.
 */
import { temporal } from '@temporalio/proto';
import type { ChainHead } from '../common/events';

export type History = temporal.api.history.v1.IHistory;
type Payload = temporal.api.common.v1.IPayload;

/** One workflow run's history, as archived: its run id and the proto's JSON object form. */
export interface ArchivedRun {
  runId: string;
  history: unknown;
}

/** A history from its JSON object form (as `fetchHistory()` serialises and the archive stores it). */
export function historyFromJson(json: unknown): History {
  return temporal.api.history.v1.History.fromObject(json as Record<string, unknown>);
}

/** A history in its JSON object form. */
export function historyToJson(history: History): unknown {
  return temporal.api.history.v1.History.toObject(history as temporal.api.history.v1.History, { bytes: String, longs: String, enums: String, defaults: false });
}

const decoder = new TextDecoder();

/** The value of a JSON payload; undefined for a null or binary one. */
export function payloadValue(p: Payload | undefined | null): unknown {
  if (!p?.data || p.data.length === 0) return undefined;
  const encoding = p.metadata?.encoding ? decoder.decode(p.metadata.encoding) : '';
  if (encoding !== 'json/plain') return undefined;
  return JSON.parse(decoder.decode(p.data));
}

/** The chain heads a run's event writes returned (local activity results), in order. */
export function anchorsOf(history: History): ChainHead[] {
  const out: ChainHead[] = [];
  for (const e of history.events ?? []) {
    const m = e.markerRecordedEventAttributes;
    if (m?.markerName !== 'core_local_activity') continue;
    const meta = payloadValue(m.details?.data?.payloads?.[0]) as { activity_type?: string } | undefined;
    if (meta?.activity_type !== 'recordEvents') continue;
    const head = payloadValue(m.details?.result?.payloads?.[0]) as ChainHead | undefined;
    if (head && typeof head.through === 'number' && typeof head.head === 'string') out.push(head);
  }
  // A fork's transcript copy is a plain activity; its head is in its result.
  for (const a of activitiesOf(history)) {
    const head = a.type === 'copyTranscript' ? (a.result as { head?: ChainHead } | undefined)?.head : undefined;
    if (head && typeof head.through === 'number' && typeof head.head === 'string') out.push(head);
  }
  return out.sort((a, b) => a.through - b.through);
}

/** What one activity returned, with its type and id, in history order. */
export interface ActivityOutcome {
  type: string;
  activityId: string;
  input: unknown;
  result: unknown;
}

/** Every completed activity of a run with its input and result. */
export function activitiesOf(history: History): ActivityOutcome[] {
  const scheduled = new Map<string, { type: string; activityId: string; input: unknown }>();
  const out: ActivityOutcome[] = [];
  for (const e of history.events ?? []) {
    const s = e.activityTaskScheduledEventAttributes;
    if (s) {
      scheduled.set(String(e.eventId), { type: s.activityType?.name ?? '', activityId: s.activityId ?? '', input: payloadValue(s.input?.payloads?.[0]) });
    }
    const c = e.activityTaskCompletedEventAttributes;
    if (c) {
      const from = scheduled.get(String(c.scheduledEventId));
      if (from) out.push({ ...from, result: payloadValue(c.result?.payloads?.[0]) });
    }
  }
  return out;
}

/** The arguments a run was started with (the spec, and for a continued run what it carried). */
export function startArgs(history: History): unknown[] {
  const started = history.events?.[0]?.workflowExecutionStartedEventAttributes;
  return (started?.input?.payloads ?? []).map((p) => payloadValue(p));
}
