/**
 * `KEEL_POOL_IMAGES`: how the variable is read, which pools a sandbox host runs, and how a session's
 * image is matched with a pool's. The pools themselves: test/integration/pool-images.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describePools, imageKey, planPools } from '../../host/pool-images';
import { loadConfig } from '../../workers/config';

describe('KEEL_POOL_IMAGES', () => {
  it('is empty by default', () => {
    assert.deepEqual(loadConfig({}).poolImages, []);
    assert.deepEqual(loadConfig({ KEEL_POOL_IMAGES: ' ' }).poolImages, []);
  });

  it('reads image and image=N, separated by commas; an image without a size gets KEEL_POOL_SIZE', () => {
    const c = loadConfig({ KEEL_POOL_SIZE: '2', KEEL_POOL_IMAGES: 'keel-sandbox-node:1, my/img:2=3,registry.example:5000/team/tools@sha256:abc=1,' });
    assert.deepEqual(c.poolImages, [
      { image: 'keel-sandbox-node:1', size: 2 },
      { image: 'my/img:2', size: 3 },
      { image: 'registry.example:5000/team/tools@sha256:abc', size: 1 },
    ]);
    assert.deepEqual(loadConfig({ KEEL_POOL_IMAGES: 'my-tools:1=2' }).poolImages, [{ image: 'my-tools:1', size: 2 }]);
  });

  it('refuses bad syntax with a message that names the variable, the entry and the right form', () => {
    const refused: Array<[Record<string, string>, RegExp]> = [
      [{ KEEL_POOL_SIZE: '2', KEEL_POOL_IMAGES: 'My-Tools:1' }, /KEEL_POOL_IMAGES: "My-Tools:1" is not a Docker image name .*; write image or image=N separated by commas, such as my-tools:1=2/],
      [{ KEEL_POOL_SIZE: '2', KEEL_POOL_IMAGES: 'a b:1' }, /KEEL_POOL_IMAGES: "a b:1" is not a Docker image name/],
      [{ KEEL_POOL_SIZE: '2', KEEL_POOL_IMAGES: '=2' }, /KEEL_POOL_IMAGES: "" is not a Docker image name/],
      [{ KEEL_POOL_IMAGES: 'my-tools:1=two' }, /KEEL_POOL_IMAGES: the size of my-tools:1 must be a whole number >= 1, not "two"/],
      [{ KEEL_POOL_IMAGES: 'my-tools:1=0' }, /the size of my-tools:1 must be a whole number >= 1, not "0" \(leave an image out to pool none of it\)/],
      [{ KEEL_POOL_IMAGES: 'my-tools:1=1.5' }, /the size of my-tools:1 must be a whole number >= 1, not "1.5"/],
      [{ KEEL_POOL_IMAGES: 'my-tools:1=' }, /the size of my-tools:1 must be a whole number >= 1, not ""/],
      [{ KEEL_POOL_IMAGES: 'my-tools:1=2=3' }, /the size of my-tools:1 must be a whole number >= 1, not "2=3"/],
      [{ KEEL_POOL_IMAGES: 'my-tools:1' }, /KEEL_POOL_IMAGES: my-tools:1 has no size and KEEL_POOL_SIZE is 0; write my-tools:1=N, or set KEEL_POOL_SIZE$/],
      [{ KEEL_POOL_SIZE: '1', KEEL_POOL_IMAGES: 'tools,tools:latest=2' }, /KEEL_POOL_IMAGES names tools:latest twice \(as tools\); name each image once$/],
      [{ KEEL_POOL_SIZE: '-1', KEEL_POOL_IMAGES: 'tools=1' }, /KEEL_POOL_SIZE must be an integer >= 0, not "-1"/],
    ];
    for (const [env, message] of refused) assert.throws(() => loadConfig(env), message, JSON.stringify(env));
  });
});

describe('planPools', () => {
  const base = 'keel-sandbox:0123456789ab';

  it('pools the default image with KEEL_POOL_SIZE and each named image with its size', () => {
    assert.deepEqual(planPools(base, 2, [{ image: 'tools:1', size: 3 }]), [
      { image: base, size: 2, named: false },
      { image: 'tools:1', size: 3, named: true },
    ]);
    assert.deepEqual(planPools(base, 0, []), []);
    assert.deepEqual(planPools(base, 0, [{ image: 'tools:1', size: 1 }]), [{ image: 'tools:1', size: 1, named: true }], 'KEEL_POOL_SIZE=0: only the named images');
  });

  it('gives the default image one pool, of the named size, when it is named too', () => {
    assert.deepEqual(planPools(base, 2, [{ image: base, size: 4 }]), [{ image: base, size: 4, named: true }]);
  });

  it('says which images are pooled in one line', () => {
    assert.equal(describePools(planPools(base, 2, [{ image: 'tools:1', size: 3 }]), base), `${base} ×2 (default image), tools:1 ×3`);
    assert.equal(describePools([], base), 'none (KEEL_POOL_SIZE=0, KEEL_POOL_IMAGES unset)');
  });
});

describe('imageKey', () => {
  it('matches a name without a tag with :latest, and Docker Hub spellings; nothing else', () => {
    assert.equal(imageKey('tools'), 'tools:latest');
    assert.equal(imageKey('tools:latest'), 'tools:latest');
    assert.equal(imageKey('docker.io/library/tools'), 'tools:latest');
    assert.equal(imageKey('docker.io/me/tools:1'), 'me/tools:1');
    assert.equal(imageKey('registry.example:5000/tools'), 'registry.example:5000/tools:latest');
    assert.equal(imageKey('tools@sha256:abc'), 'tools@sha256:abc');
    assert.notEqual(imageKey('tools:1'), imageKey('tools:2'));
    assert.notEqual(imageKey('me/tools:1'), imageKey('you/tools:1'));
  });
});
