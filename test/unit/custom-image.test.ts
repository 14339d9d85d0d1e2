/** The static half of the custom image contract, and the default tag of a recipe. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { configProblems, customImageTag, ImageBuildError, resolveRecipe } from '../../host/custom-image';
import { EXECUTOR_COMMAND } from '../../host/lockdown';

const keeps = { User: 'keel', Entrypoint: null, Cmd: [...EXECUTOR_COMMAND] };

test("the sandbox image's own config keeps the contract", () => {
  assert.deepEqual(configProblems(keeps), []);
  assert.deepEqual(configProblems({ ...keeps, User: '1000:1000' }), []);
});

test('USER root (or none), an ENTRYPOINT and another CMD each break it, with the fix', () => {
  assert.match(configProblems({ ...keeps, User: 'root' }).join('\n'), /its USER is 'root'.*end with `USER keel`/);
  assert.match(configProblems({ ...keeps, User: '' }).join('\n'), /its USER is root \(none set\)/);
  assert.match(configProblems({ ...keeps, User: '0' }).join('\n'), /its USER is '0'/);
  assert.match(configProblems({ ...keeps, Entrypoint: ['/bin/sh', '-c'] }).join('\n'), /sets ENTRYPOINT \["\/bin\/sh","-c"\].*remove the ENTRYPOINT/);
  assert.match(configProblems({ ...keeps, Cmd: ['bash'] }).join('\n'), /its CMD is \["bash"\], not \["python3","-u","\/opt\/keel\/executor.py"\]/);
  assert.equal(configProblems({ User: 'root', Entrypoint: ['x'], Cmd: ['y'] }).length, 3);
});

test('the default tag changes with the base, the Dockerfile and any file of the context', () => {
  const dir = mkdtempSync(join(tmpdir(), 'keel-recipe-'));
  try {
    writeFileSync(join(dir, 'Dockerfile'), 'ARG KEEL_BASE\nFROM ${KEEL_BASE}\n');
    writeFileSync(join(dir, 'tool.sh'), 'echo 1\n');
    const recipe = resolveRecipe(dir);
    const first = customImageTag(recipe, 'keel-sandbox:aaa');
    assert.match(first, /^keel-custom:[0-9a-f]{12}$/);
    assert.equal(customImageTag(resolveRecipe(join(dir, 'Dockerfile')), 'keel-sandbox:aaa'), first, 'a folder or its Dockerfile: the same recipe');
    assert.notEqual(customImageTag(recipe, 'keel-sandbox:bbb'), first);
    writeFileSync(join(dir, 'tool.sh'), 'echo 2\n');
    assert.notEqual(customImageTag(recipe, 'keel-sandbox:aaa'), first);
    assert.throws(() => resolveRecipe(join(dir, 'missing')), (e: unknown) => e instanceof ImageBuildError && /no such file or folder/.test((e as Error).message));
    rmSync(join(dir, 'Dockerfile'));
    assert.throws(() => resolveRecipe(dir), /the folder has no Dockerfile/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
