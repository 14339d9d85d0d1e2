/**
 * The web console: one static page (`api/console/`: HTML, a plain JS module, CSS; no build step)
 * served by `keel serve` at `/console`. The page itself is public; everything it shows comes
 * from the API with the key the user enters, so it sees exactly what that key sees.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { FastifyInstance, FastifyReply } from 'fastify';

const FILES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'console.css': 'text/css; charset=utf-8',
};

/** Nothing but this origin's own files, no inline script or style, never framed. */
const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
};

/** The folder of the static files: next to this module from source, in the package's api/ from dist/. */
function consoleDir(): string {
  for (const dir of [path.join(__dirname, 'console'), path.join(__dirname, '..', '..', 'api', 'console')]) {
    if (existsSync(path.join(dir, 'index.html'))) return dir;
  }
  throw new Error(`the console's files (api/console/index.html) are not next to ${__dirname}`);
}

export function registerConsole(app: FastifyInstance): void {
  const dir = consoleDir();
  // Read once: the files are small and part of the release.
  const body = Object.fromEntries(Object.keys(FILES).map((f) => [f, readFileSync(path.join(dir, f))]));
  const send = (file: string) => async (_req: unknown, reply: FastifyReply) => reply.headers({ ...SECURITY_HEADERS, 'content-type': FILES[file]! }).send(body[file]);
  const opts = { config: { public: true }, schema: { hide: true } };
  app.get('/', opts, async (_req, reply) => reply.redirect('/console/'));
  app.get('/console', opts, async (_req, reply) => reply.redirect('/console/'));
  app.get('/console/', opts, send('index.html'));
  for (const file of Object.keys(FILES)) app.get(`/console/${file}`, opts, send(file));
}
