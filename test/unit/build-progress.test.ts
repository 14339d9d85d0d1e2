/** `keel image build` progress: the step of how many from either builder's output, and quiet steps told again. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BuildProgress, parseBuildStep } from '../../host/build-progress';

test('steps are read from the legacy builder and from BuildKit plain output', () => {
  assert.deepEqual(parseBuildStep('Step 2/5 : RUN apt-get install -y jq'), { step: 2, total: 5, what: 'RUN apt-get install -y jq' });
  assert.deepEqual(parseBuildStep('#7 [2/5] RUN pip install x'), { step: 2, total: 5, what: 'RUN pip install x' });
  assert.deepEqual(parseBuildStep('#5 [builder 3/4] COPY . /src'), { step: 3, total: 4, what: 'COPY . /src' });
  assert.equal(parseBuildStep(' ---> Running in 1a2b3c'), undefined);
  assert.equal(parseBuildStep('#7 0.512 Reading package lists...'), undefined);
});

test('a new step is progress; a step running quietly is told at 10 s and each doubling', () => {
  const b = new BuildProgress();
  const t = 1_000_000;
  assert.equal(b.quiet(t), undefined, 'nothing before the first step');
  assert.deepEqual(b.line('Step 1/3 : FROM keel-sandbox:abc', t), { phase: 'building step', done: 1, total: 3, unit: 'steps' });
  assert.deepEqual(b.line('Step 2/3 : RUN sleep 60', t + 100), { phase: 'building step', done: 2, total: 3, unit: 'steps' });
  assert.equal(b.line('#9 [2/3] RUN sleep 60', t + 200)?.done, undefined, 'the same step again is not news');
  assert.equal(b.quiet(t + 5_000), undefined);
  assert.equal(b.quiet(t + 10_200), '… step 2 of 3 (RUN sleep 60) still running (10 s)');
  assert.equal(b.quiet(t + 15_000), undefined);
  assert.equal(b.quiet(t + 20_300), '… step 2 of 3 (RUN sleep 60) still running (20 s)');
  b.line('Step 3/3 : LABEL x=y', t + 30_000);
  assert.equal(b.quiet(t + 31_000), undefined, 'a new step starts the clock again');
});
