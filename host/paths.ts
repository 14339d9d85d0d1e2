/** Where Keel's own files are on this machine: found from this module's location, from source or from dist/. */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

/**
 * The Keel package root: the nearest folder above `from` holding package.json and the
 * sandbox recipe (works from `host/*.ts` under tsx and from `dist/host/*.js`).
 */
export function keelRoot(from: string = __dirname): string {
  let dir = from;
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'sandbox', 'Dockerfile'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`no Keel checkout (package.json with sandbox/) above ${from}`);
    dir = up;
  }
}

/** The folder holding the sandbox image recipe and the executor. */
export function sandboxDir(): string {
  return join(keelRoot(), 'sandbox');
}
