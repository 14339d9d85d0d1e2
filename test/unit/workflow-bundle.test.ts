/**
 * Keeps workflows/ deterministic: bundling it the way a worker does must succeed,
 * and the same bundler must refuse workflow code that imports a Node module.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { bundleWorkflowCode } from '@temporalio/worker';

const silent = { trace() {}, debug() {}, info() {}, warn() {}, error() {}, log() {} };

test('workflows/ bundles for the deterministic sandbox', async () => {
  const { code } = await bundleWorkflowCode({ workflowsPath: require.resolve('../../workflows'), logger: silent });
  assert.match(code, /agentSession/);
  // No Node module, database driver or Docker client may end up in workflow code.
  for (const banned of ['dockerode', 'require("fs")', 'require("child_process")', 'postgres/cjs']) {
    assert.ok(!code.includes(banned), `bundle contains ${banned}`);
  }
});

test('the bundler refuses workflow code that imports a Node module', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'keel-bad-wf-'));
  const file = join(dir, 'bad.ts');
  writeFileSync(file, "import { readFileSync } from 'node:fs';\nexport async function bad() { return readFileSync('/etc/hostname', 'utf8'); }\n");
  const errors: string[] = [];
  const capture = { ...silent, error: (msg: string, meta?: unknown) => void errors.push(`${msg} ${JSON.stringify(meta ?? '')}`) };
  await assert.rejects(bundleWorkflowCode({ workflowsPath: file, logger: capture }), /Webpack finished with errors/);
  assert.match(errors.join('\n'), /node:fs/, 'the error names the forbidden import');
});
