import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { mkdirSync } from 'node:fs';
import { defaultImageTag, recipeHash, sandboxDir } from '../../host';
import { keelRoot as repoRoot, recipeFiles } from '../../host';

const RECIPE = ['Dockerfile', 'build.sh', 'executor/main.py', 'executor/tools.py'];

describe('recipe hash', () => {
  const dir = mkdtempSync(join(tmpdir(), 'keel-recipe-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const write = (contents: Record<string, string>): void => {
    for (const [name, text] of Object.entries(contents)) {
      mkdirSync(join(dir, name, '..'), { recursive: true });
      writeFileSync(join(dir, name), text);
    }
  };
  write(Object.fromEntries(RECIPE.map((f) => [f, `contents of ${f}\n`])));

  it('is 12 hex digits and stable', () => {
    const h = recipeHash(dir);
    assert.match(h, /^[0-9a-f]{12}$/);
    assert.equal(recipeHash(dir), h);
    assert.equal(defaultImageTag(dir), `keel-sandbox:${h}`);
  });

  it('changes when any recipe file changes, and back when it is restored', () => {
    const before = recipeHash(dir);
    assert.deepEqual(recipeFiles(dir), [...RECIPE].sort());
    for (const file of RECIPE) {
      write({ [file]: `changed ${file}\n` });
      assert.notEqual(recipeHash(dir), before, `${file} should change the hash`);
      write({ [file]: `contents of ${file}\n` });
      assert.equal(recipeHash(dir), before);
    }
  });

  it('ignores files that are not part of the recipe', () => {
    const before = recipeHash(dir);
    write({ 'notes.md': 'unrelated', 'executor/__pycache__/main.cpython-311.pyc': 'bytecode', 'executor/x.pyc': 'bytecode' });
    assert.equal(recipeHash(dir), before);
  });

  it('changes when a file is added or renamed', () => {
    const before = recipeHash(dir);
    write({ 'executor/extra.py': 'new module\n' });
    const added = recipeHash(dir);
    assert.notEqual(added, before);
    rmSync(join(dir, 'executor/extra.py'));
    write({ 'executor/other.py': 'new module\n' });
    assert.notEqual(recipeHash(dir), added, 'a renamed file changes the hash');
    rmSync(join(dir, 'executor/other.py'));
    assert.equal(recipeHash(dir), before);
  });

  it('fails loudly when a recipe file is missing', () => {
    const empty = mkdtempSync(join(tmpdir(), 'keel-recipe-empty-'));
    try {
      assert.throws(() => recipeHash(empty), /ENOENT/);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it('finds the repository sandbox/ folder from the source tree', () => {
    assert.ok(existsSync(join(sandboxDir(), 'Dockerfile')));
    assert.ok(existsSync(join(repoRoot(), 'package.json')));
    assert.match(defaultImageTag(), /^keel-sandbox:[0-9a-f]{12}$/);
  });

  it('walks up from a nested build folder (dist/activities/sandbox)', () => {
    assert.equal(repoRoot(join(repoRoot(), 'dist', 'activities', 'sandbox')), repoRoot());
    assert.throws(() => repoRoot(tmpdir()), /no Keel checkout/);
  });
});
