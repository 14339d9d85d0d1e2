/** The version recorded in every session's runtime contract is the package's. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { KEEL_VERSION } from '../../common/constants';

test('KEEL_VERSION is package.json version', () => {
  const pkg = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
  assert.equal(KEEL_VERSION, pkg.version);
});
