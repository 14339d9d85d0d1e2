/**
 * The runtime contract's comparison: what `keel audit rerun` reports as changed
 * between the contract a session recorded and today's.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { contractDifferences, modelContract } from '../../audit/contract';
import type { RuntimeContract } from '../../common/types';

const sandbox = { image: 'keel-sandbox:a', imageId: 'sha256:1', imageDigests: [], executor: 'e1', limits: { memoryMb: 1024, cpus: 1, pidsLimit: 256 }, network: 'none' };

test('the same contract has no differences; each changed field, tool and sandbox setting is named', () => {
  const model = { provider: 'anthropic' as const, model: 'claude-sonnet-4-5' };
  const recorded: RuntimeContract = { ...modelContract(model), sandbox };
  assert.deepEqual(contractDifferences(recorded, { model: modelContract(model), sandbox }), []);

  const today = modelContract({ ...model, maxOutputTokens: 8192 });
  today.tools = today.tools.filter((t) => t.name !== 'list_files').map((t) => (t.name === 'shell' ? { ...t, schemaSha: 'f'.repeat(64) } : t));
  today.tools.push({ name: 'browse', schemaSha: 'a'.repeat(64) });
  today.keelVersion = '9.9.9';
  const changed = contractDifferences(recorded, { model: today, sandbox: { ...sandbox, imageId: 'sha256:2', limits: { ...sandbox.limits, memoryMb: 512 }, network: 'allowlist' } });
  assert.deepEqual(changed.map((d) => d.field), [
    'model.maxOutputTokens',
    'tool shell',
    'tool list_files',
    'tool browse',
    'keelVersion',
    'sandbox.imageId',
    'sandbox.limits',
    'sandbox.network',
  ]);
  assert.equal(changed.find((d) => d.field === 'tool list_files')?.today, '(removed)');
  assert.equal(changed.find((d) => d.field === 'tool browse')?.recorded, '(absent)');
  // Without today's sandbox, only the model side is compared.
  assert.deepEqual(contractDifferences(recorded, { model: modelContract(model) }), []);
});
