/**
 * Replay test: recorded session histories must replay against the current
 * workflow code, so a non-deterministic change to workflows/ fails CI.
 * Re-record with `KEEL_RECORD_HISTORY=1 npm test` only when a change is
 * deliberately made safe with `patched()`.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { temporal } from '@temporalio/proto';
import { DeterminismViolationError } from '@temporalio/workflow';
import { Worker } from '@temporalio/worker';
import '../helpers/quiet';
import { workflowBundle } from '../helpers/env';

const dir = join(__dirname, '..', 'histories');
const files = readdirSync(dir).filter((f) => f.endsWith('.json'));

// Histories are stored as the proto's JSON object form (what `fetchHistory()` serialises to).
const historyFromObject = (json: unknown) => temporal.api.history.v1.History.fromObject(json as Record<string, unknown>);

test('at least one recorded history is committed', () => {
  assert.ok(files.length > 0, `no histories in ${dir}`);
});

for (const file of files) {
  test(`${file} replays against the current workflow code`, async () => {
    const history = historyFromObject(JSON.parse(readFileSync(join(dir, file), 'utf8')));
    // The recorded workflow id where the history has it: an eval names its children after its own id.
    const workflowId = history.events?.[0]?.workflowExecutionStartedEventAttributes?.workflowId || file;
    await Worker.runReplayHistory({ workflowBundle: await workflowBundle() }, history, workflowId);
  });
}

test('an altered history fails to replay with a determinism violation', async () => {
  const withProvision = files.find((f) => readFileSync(join(dir, f), 'utf8').includes('"provisionSandbox"'));
  assert.ok(withProvision, 'a committed history provisions a sandbox');
  const json = JSON.parse(readFileSync(join(dir, withProvision), 'utf8')) as { events: Array<Record<string, any>> };
  // Pretend the recorded workflow scheduled a different activity than today's code does.
  const scheduled = json.events.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'provisionSandbox');
  assert.ok(scheduled, 'history has a provisionSandbox activity');
  scheduled.activityTaskScheduledEventAttributes.activityType.name = 'provisionVirtualMachine';
  await assert.rejects(
    Worker.runReplayHistory({ workflowBundle: await workflowBundle() }, historyFromObject(json), 'altered'),
    DeterminismViolationError,
  );
});
