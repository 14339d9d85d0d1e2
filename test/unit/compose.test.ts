/**
 * docker-compose.yml cannot be brought up here (no registry), so it is checked against what it names: every
 * Keel service's command and options exist in the CLI, every variable is read by the code and documented, the
 * Temporal services pin the version scripts/temporal-server.sh builds and mount the config the cluster suite
 * runs with, ports agree with the code's defaults, and every worker shares one blob store.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { SEARCH_ATTRIBUTES } from '../../common/search-attributes';

const root = join(__dirname, '..', '..');
const read = (path: string) => readFileSync(join(root, path), 'utf8');

interface Service {
  image?: string;
  build?: string;
  command?: string[] | string;
  environment?: Record<string, string | number>;
  volumes?: string[];
  ports?: string[];
}
const compose = parse(read('docker-compose.yml'), { merge: true }) as { services: Record<string, Service>; volumes: Record<string, unknown> };
const services = Object.entries(compose.services);
const keelServices = services.filter(([, s]) => s.build === '.');
const temporalServices = services.filter(([, s]) => s.image?.startsWith('temporalio/'));

/** Source files of the product (not tests), where a variable must be read. */
function sources(dir = root): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    if (['node_modules', 'dist', 'test', '.git', '.keel', 'bench'].includes(d.name)) return [];
    const path = join(dir, d.name);
    return d.isDirectory() ? sources(path) : d.name.endsWith('.ts') ? [readFileSync(path, 'utf8')] : [];
  });
}
const code = sources().join('\n');
/** The README, and the text waiting to be merged into it. */
const pending = join(root, 'docs', 'readme-pending');
const readme = [read('README.md'), ...(existsSync(pending) ? readdirSync(pending).map((f) => readFileSync(join(pending, f), 'utf8')) : [])].join('\n');
const temporalConfig = read('deploy/temporal.yaml');
const temporalVersion = /go\.temporal\.io\/server v(\S+)/.exec(read('deploy/temporal-build/go.mod'))![1]!;

const mounts = (s: Service) => (s.volumes ?? []).map((v) => { const [from, to] = v.split(':'); return { from: from!, to: to! }; });

test('the compose file has the production shape', () => {
  const images = services.map(([, s]) => s.image?.split(':')[0]);
  for (const image of ['postgres', 'temporalio/server', 'temporalio/ui']) assert.ok(images.includes(image), `a ${image} service`);
  const roles = keelServices.map(([, s]) => [s.command].flat().join(' '));
  assert.ok(roles.includes('worker --role session') && roles.includes('worker --role sandbox'), 'session and sandbox-host workers');
  const sandbox = keelServices.find(([, s]) => [s.command].flat().includes('sandbox'))![1];
  assert.ok(mounts(sandbox).some((m) => m.from === '/var/run/docker.sock'), 'the sandbox-host worker has the Docker socket');
  assert.equal(keelServices.filter(([, s]) => mounts(s).some((m) => m.from === '/var/run/docker.sock')).length, 1, 'and only it');
});

test('every Keel service runs a command and options the CLI has', () => {
  const main = read('cli/main.ts');
  for (const [name, s] of keelServices) {
    const [command, ...args] = [s.command ?? 'worker'].flat(); // the image's CMD is `worker`
    assert.ok(main.includes(`.command('${command}')`), `${name}: keel ${command} exists`);
    for (const flag of args.filter((a) => a.startsWith('--'))) assert.match(main, new RegExp(`\\.option\\('${flag}\\b`), `${name}: ${command} ${flag} exists`);
  }
});

test('every variable of a Keel service is read by the code and documented', () => {
  for (const [name, s] of keelServices) {
    for (const key of Object.keys(s.environment ?? {})) {
      assert.match(code, new RegExp(`\\b${key}\\b`), `${name}: ${key} is read by the code`);
      assert.match(readme, new RegExp(`\\b${key}\\b`), `${name}: ${key} is in the README`);
    }
  }
});

test('the Temporal services pin the version the cluster suite builds and run its config', () => {
  for (const [name, s] of temporalServices.filter(([, s]) => !s.image!.startsWith('temporalio/ui'))) {
    assert.equal(s.image!.split(':')[1], temporalVersion, `${name} pins ${temporalVersion}`);
    for (const key of Object.keys(s.environment ?? {})) assert.match(temporalConfig, new RegExp(`\\b${key}\\b`), `${name}: ${key} is read by deploy/temporal.yaml`);
    for (const m of mounts(s)) assert.ok(existsSync(join(root, m.from)), `${name}: ${m.from} exists`);
  }
  const server = compose.services.temporal!;
  const mountOf = (file: string) => mounts(server).find((m) => m.from === file)?.to;
  assert.equal(mountOf('./deploy/temporal.yaml'), server.environment!.TEMPORAL_SERVER_CONFIG_FILE_PATH, 'the server runs deploy/temporal.yaml');
  assert.equal(mountOf('./deploy/temporal-dynamic-config.yaml'), server.environment!.DYNAMIC_CONFIG_FILE_PATH, 'with the dev server\'s dynamic config');
  assert.match(read('scripts/temporal-server.sh'), /--config-file "\$ROOT\/deploy\/temporal\.yaml"/, 'the cluster suite runs the same file');
  // The schema service sets up the same databases the config names.
  const schema = compose.services['temporal-schema']!;
  for (const key of ['DBNAME', 'VISIBILITY_DBNAME']) assert.equal(schema.environment![key], server.environment![key]);
});

test('ports agree with the code\'s defaults', () => {
  const port = (s: Service, container: string) => s.ports?.map((p) => p.split(':')).find(([, c]) => c === container)?.[0];
  const configured = /default "(\d+)" \(env "FRONTEND_GRPC_PORT"\)/.exec(temporalConfig)![1]!;
  assert.equal(port(compose.services.temporal!, configured), configured, 'the frontend port is published as itself');
  for (const [name, s] of keelServices) assert.equal(String(s.environment!.TEMPORAL_ADDRESS), `temporal:${configured}`, `${name} reaches the frontend`);
  assert.equal(String(compose.services['temporal-ui']!.environment!.TEMPORAL_ADDRESS), `temporal:${configured}`);
  const ui = port(compose.services['temporal-ui']!, '8080');
  assert.match(read('workers/config.ts'), new RegExp(`'http://localhost:${ui}'`), 'the UI where KEEL_TEMPORAL_UI points by default');
  assert.match(read('client/connection.ts') + read('workers/config.ts'), new RegExp(`localhost:${configured}`), 'the default TEMPORAL_ADDRESS');
});

test('every worker shares one blob store, a declared named volume', () => {
  for (const [name, s] of services) {
    for (const m of mounts(s).filter((m) => !m.from.startsWith('.') && !m.from.startsWith('/'))) {
      assert.ok(m.from in compose.volumes, `${name}: volume ${m.from} is declared`);
    }
  }
  const stores = keelServices.map(([name, s]) => {
    const dir = String(s.environment!.KEEL_BLOB_DIR ?? '');
    const volume = mounts(s).find((m) => m.to === dir)?.from;
    assert.ok(dir && volume, `${name}: KEEL_BLOB_DIR is on a mounted volume`);
    assert.ok(!s.environment!.KEEL_BLOB_S3_BUCKET, `${name}: no S3 store alongside`);
    return volume;
  });
  assert.equal(new Set(stores).size, 1, `one blob volume for all: ${stores.join(', ')}`);
});

test('every service is described in the README', () => {
  for (const [name] of services) assert.match(readme, new RegExp(`\\b${name}\\b`), `${name} is in the README`);
});

test("the namespace service and the cluster script register every one of Keel's search attributes", () => {
  const namespace = compose.services['temporal-namespace'];
  const script = [namespace?.command ?? ''].flat().join('\n');
  const serverScript = read('scripts/temporal-server.sh');
  for (const { name } of SEARCH_ATTRIBUTES) {
    assert.match(script, new RegExp(`\\b${name}\\b`), `temporal-namespace does not register ${name}`);
    assert.match(serverScript, new RegExp(`\\b${name}\\b`), `scripts/temporal-server.sh namespace does not register ${name}`);
  }
  assert.match(script, /search-attribute create .*--type Keyword/);
});
