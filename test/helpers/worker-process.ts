/**
 * A Keel worker in its own process, for tests that kill it with SIGKILL.
 * Configured by the environment like `keel worker`; prints "ready" once polling.
 */
import './quiet';
import { loadConfig } from '../../workers/config';
import { createWorkers } from '../../workers/worker';
import { workflowBundle } from './env';

async function main() {
  const workers = await createWorkers(loadConfig(), { workflowBundle: await workflowBundle() });
  process.once('SIGTERM', () => void workers.shutdown());
  const running = workers.run();
  console.log('ready');
  await running;
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
