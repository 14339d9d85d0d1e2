/**
 * A session's whole Temporal history: every workflow run, following
 * continue-as-new from the first run to the last.
 */
import type { Client } from '@temporalio/client';
import { temporal } from '@temporalio/proto';

type History = temporal.api.history.v1.IHistory;
type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

export interface RunHistory {
  runId: string;
  history: History;
}

/** The run a finished run continued as, if it did. */
function continuedAs(history: History): string | undefined {
  const last = history.events?.[history.events.length - 1];
  return last?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId ?? undefined;
}

/** Every run of a session, oldest first, starting at `firstRunId` (the `workflowRunId` of `session.started`). */
export async function sessionHistories(client: Client, sessionId: string, firstRunId: string): Promise<RunHistory[]> {
  const runs: RunHistory[] = [];
  for (let runId: string | undefined = firstRunId; runId; ) {
    const history = (await client.workflow.getHandle(sessionId, runId).fetchHistory()) as History;
    runs.push({ runId, history });
    runId = continuedAs(history);
  }
  return runs;
}

/** Bytes of a history as Temporal stores and sends it (binary protobuf). */
export function historyBytes(history: History): number {
  return temporal.api.history.v1.History.encode(history).finish().length;
}

/** Bytes of one event inside a history (its length prefix included). */
export function eventBytes(event: HistoryEvent): number {
  const n = temporal.api.history.v1.HistoryEvent.encode(event).finish().length;
  return n + 1 + (n < 128 ? 1 : n < 16384 ? 2 : 3);
}
