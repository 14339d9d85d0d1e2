/**
 * Shared set-up for integration tests: config pointing at a test Temporal
 * server, the workflow bundle (built once per file), and cleanup helpers.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import Docker from 'dockerode';
import { DirBlobStore } from '../../blobs';
import { DEFAULT_SANDBOX_RUNTIME } from '../../common/defaults';
import { defaultImageTag, ensureImage, listManagedContainers, type ManagedContainer } from '../../host';
import { loadConfig, type KeelConfig } from '../../workers/config';

export function testConfig(temporalAddress: string, extra: Record<string, string> = {}): KeelConfig {
  return loadConfig({ ...process.env, TEMPORAL_ADDRESS: temporalAddress, ...extra });
}

let bundle: Promise<{ code: string }> | undefined;
/** The workflows, bundled once per test process. */
export function workflowBundle(): Promise<{ code: string }> {
  bundle ??= bundleWorkflowCode({ workflowsPath: require.resolve('../../workflows'), logger: quietLogger });
  return bundle;
}

const noop = () => undefined;
const quietLogger = { trace: noop, debug: noop, info: noop, warn: noop, error: console.error, log: noop };

/** Containers Keel made for a session, running or not; claimed warm-pool containers included. */
export async function sessionContainers(docker: Docker, sessionId: string): Promise<ManagedContainer[]> {
  return (await listManagedContainers(docker)).filter((c) => c.sessionId === sessionId);
}

export function uniqueId(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
}

/** Build the sandbox image if the recipe changed since setup ran (seconds with the cached base). */
export async function ensureSandboxImage(docker: Docker): Promise<void> {
  await ensureImage(docker, defaultImageTag());
}

/**
 * The Docker runtime sandboxes run under in this test run: `KEEL_SANDBOX_RUNTIME` (the runsc suite,
 * scripts/test-runsc.sh, sets `runsc`), else runc. Worker processes the tests spawn read the same variable.
 */
export function testRuntime(): string {
  return process.env.KEEL_SANDBOX_RUNTIME || DEFAULT_SANDBOX_RUNTIME;
}

/** A blob store in a fresh temporary directory, for tests whose snapshots nobody else reads. */
export function scratchBlobs(): DirBlobStore {
  return new DirBlobStore(mkdtempSync(join(tmpdir(), 'keel-test-blobs-')));
}

/** The test database as the role that owns its tables (migrations, tenant caps). */
export function testOwnerUrl(): string {
  return process.env.KEEL_TEST_DATABASE_OWNER_URL ?? 'postgres://keel_owner:keel_owner@localhost:5432/keel_test';
}
