/** `keel eval`'s progress line: rollouts done of the total, told when it changes. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rolloutLine } from '../../cli/eval-progress';

test('rollouts done of the total and running, told only when the counts change', () => {
  assert.equal(rolloutLine(10, { started: 3, ended: 0 }, undefined, 4_200), '  … 0 of 10 rollouts done, 3 running (4 s)');
  assert.equal(rolloutLine(10, { started: 3, ended: 0 }, { started: 3, ended: 0 }, 6_000), undefined, 'no change: nothing');
  assert.equal(rolloutLine(10, { started: 4, ended: 1 }, { started: 3, ended: 0 }, 9_600), '  … 1 of 10 rollouts done, 3 running (10 s)');
  assert.equal(rolloutLine(10, { started: 10, ended: 10 }, { started: 10, ended: 9 }, 60_000), '  … 10 of 10 rollouts done, 0 running (60 s)');
});
