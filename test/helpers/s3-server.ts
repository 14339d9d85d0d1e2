/**
 * A real S3-compatible server for integration tests: moto's server mode, on its
 * own port, from the project's tool venv (`npm run setup` installs it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { loadConfig } from '../../workers/config';
import { toolPath, waitForPort } from '../../workers/dev-server';
import { freePort } from './temporal';

/** moto accepts any credentials unless told to check them; these are what tests sign with. */
export const TEST_CREDENTIALS = { accessKeyId: 'testing', secretAccessKey: 'testing' };

/** `moto_server`: KEEL_MOTO_SERVER, else the copy setup installs in the tool venv. */
export function motoServerPath(): string {
  return process.env.KEEL_MOTO_SERVER || toolPath(loadConfig(), 'moto_server');
}

export class TestS3 {
  private child?: ChildProcess;
  private readonly dir = mkdtempSync(join(tmpdir(), 'keel-moto-'));

  private constructor(readonly port: number) {}

  /**
   * Start moto on a free port and wait until it listens. Throws (never skips) when moto is not installed.
   * With `auth`, moto checks signatures against its own IAM users (so unknown keys are refused).
   */
  static async start(opts: { auth?: boolean } = {}): Promise<TestS3> {
    const bin = motoServerPath();
    if (!existsSync(bin)) {
      throw new Error(`moto_server is not installed (looked for ${bin}). Run \`npm run setup\`: it installs moto[server] into .keel/tools/venv.`);
    }
    const s3 = new TestS3(await freePort());
    const log = openSync(s3.logFile, 'a');
    s3.child = spawn(bin, ['-H', '127.0.0.1', '-p', String(s3.port)], {
      stdio: ['ignore', log, log],
      env: { ...process.env, ...(opts.auth ? { INITIAL_NO_AUTH_ACTION_COUNT: '0' } : {}) },
    });
    const exited = new Promise<never>((_, reject) =>
      s3.child?.once('exit', (code) => reject(new Error(`moto_server exited (${code}) before listening; log:\n${s3.log()}`))),
    );
    exited.catch(() => undefined);
    await Promise.race([waitForPort('127.0.0.1', s3.port, 30_000), exited]);
    return s3;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get logFile(): string {
    return join(this.dir, 'moto.log');
  }

  log(): string {
    return existsSync(this.logFile) ? readFileSync(this.logFile, 'utf8').slice(-4000) : '';
  }

  /** Create a bucket (path-style, test credentials). */
  async createBucket(bucket: string): Promise<void> {
    const client = new S3Client({ endpoint: this.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: TEST_CREDENTIALS });
    try {
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
    } finally {
      client.destroy();
    }
  }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
