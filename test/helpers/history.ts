/**
 * Recording workflow histories for the replay test (test/unit/replay.test.ts).
 * Only with KEEL_RECORD_HISTORY=1: committed histories change on purpose, never as a side effect of a test run.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';

/** Write the history of `sessionId` (its latest run, or run `runId`) to test/histories/`file`. */
export async function recordHistory(client: Client, sessionId: string, file: string, runId?: string): Promise<void> {
  if (!process.env.KEEL_RECORD_HISTORY) return;
  const history = await client.workflow.getHandle(sessionId, runId).fetchHistory();
  writeFileSync(join(__dirname, '..', 'histories', file), JSON.stringify(history, null, 1));
}
