/**
 * A real Temporal server for integration tests, on its own port, that a test can stop and start again (state
 * survives): the dev server with its own state file, or with KEEL_TEST_TEMPORAL=cluster (`npm run
 * test:cluster`) the production server on Postgres that scripts/temporal-server.sh builds and runs.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../workers/config';
import { resolveTemporalCli, startDevServer, toolPath, waitForPort } from '../../workers/dev-server';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
    srv.once('error', reject);
  });
}

/**
 * A frontend port whose neighbours the cluster server also takes (deploy/temporal.yaml: +1..+3, +100..+103) are
 * free; below 32,768, because Temporal stores membership ports as a Postgres smallint (and the kernel's ephemeral
 * range starts there).
 */
async function freePortBlock(): Promise<number> {
  const bindable = (port: number) =>
    new Promise<boolean>((resolve) => {
      const srv = createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const all = [0, 1, 2, 3, 100, 101, 102, 103].map((d) => port + d);
    if ((await Promise.all(all.map(bindable))).every(Boolean)) return port;
  }
}

const clusterMode = () => process.env.KEEL_TEST_TEMPORAL === 'cluster';
const serverScript = join(__dirname, '..', '..', 'scripts', 'temporal-server.sh');

export class TestTemporal {
  private child?: ChildProcess;
  readonly dir = mkdtempSync(join(tmpdir(), 'keel-temporal-'));

  private constructor(readonly port: number) {}

  static async start(): Promise<TestTemporal> {
    const t = new TestTemporal(clusterMode() ? await freePortBlock() : await freePort());
    await t.up();
    return t;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async up(): Promise<void> {
    if (clusterMode()) return this.upCluster();
    this.child = startDevServer({
      cli: resolveTemporalCli(loadConfig()),
      dbFile: join(this.dir, 'temporal.db'),
      port: this.port,
      uiPort: await freePort(),
      logFile: join(this.dir, 'temporal.log'),
    });
    await waitForPort('127.0.0.1', this.port, 60_000);
  }

  /**
   * The Postgres-backed server: builds once, brings the schemas up to date, execs the server (the child is it).
   * Its own databases per instance (named by its port): servers that share a database form one cluster, and a
   * stopped one stays in the membership table for a while. scripts/test-cluster.sh drops them before a run.
   */
  private async upCluster(): Promise<void> {
    const env = {
      ...process.env,
      FRONTEND_GRPC_PORT: String(this.port),
      DBNAME: `temporal_test_${this.port}`,
      VISIBILITY_DBNAME: `temporal_visibility_test_${this.port}`,
      TEMPORAL_CLI: resolveTemporalCli(loadConfig()),
    };
    const log = openSync(join(this.dir, 'temporal.log'), 'a');
    this.child = spawn('bash', [serverScript, 'run'], { env, stdio: ['ignore', log, log] });
    await waitForPort('127.0.0.1', this.port, 120_000);
    execFileSync('bash', [serverScript, 'namespace'], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  }

  /** Stop the server (SIGTERM by default, SIGKILL for a crash). */
  async down(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill(signal);
    await exited;
    this.child = undefined;
  }
}

/** The time-skipping test server: TEMPORAL_TEST_SERVER, else the copy setup installs in the tool venv. */
export function timeSkippingServerPath(): string {
  return process.env.TEMPORAL_TEST_SERVER || toolPath(loadConfig(), 'temporal-test-server');
}
