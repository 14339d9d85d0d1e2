/**
 * Workers announce which workflow code they run: every workflow task a session worker completes records the
 * build id `keel-<sha256 of the workflow bundle>` in the session's history, so an operator rolling out a change
 * sees which sessions have moved to the new code (`temporal workflow describe`, `keel audit replay`).
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, test } from 'node:test';
import { uniqueId, workflowBundle } from '../helpers/env';
import { startStack, type Stack } from '../helpers/stack';

let stack: Stack;

before(async () => {
  stack = await startStack('versioning-host');
});

after(async () => {
  await stack?.stop();
});

test('every workflow task of a session records the build id of the bundle that ran it', async () => {
  const id = await stack.client.start(
    { task: 'versioning', model: { provider: 'scripted', model: 'versioning', script: [{ text: 'done' }] } },
    { sessionId: uniqueId('versioning') },
  );
  assert.equal((await stack.client.result(id)).status, 'completed');
  const expected = `keel-${createHash('sha256').update((await workflowBundle()).code).digest('hex').slice(0, 12)}`;
  const history = await stack.client.temporal.workflow.getHandle(id).fetchHistory();
  const recorded = (history.events ?? []).flatMap((e) => (e.workflowTaskCompletedEventAttributes ? [e.workflowTaskCompletedEventAttributes.workerVersion?.buildId] : []));
  assert.ok(recorded.length > 0, 'workflow tasks completed');
  assert.deepEqual(new Set(recorded), new Set([expected]));
  const described = await stack.client.temporal.workflow.getHandle(id).describe();
  assert.equal(described.raw.workflowExecutionInfo?.mostRecentWorkerVersionStamp?.buildId, expected);
});
