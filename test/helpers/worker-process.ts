/**
 * A Keel worker in its own process, for tests that kill it with SIGKILL.
 * Configured by the environment like `keel worker`; prints "ready" once polling.
 *
 * Fault injection (tests only): with KEEL_TEST_KILL_AFTER_TOOL=<text>, the
 * process SIGKILLs itself after the first runTool whose call mentions <text>
 * has finished in the sandbox but before the activity reports completion:
 * the window in which an at-least-once activity would run a command twice.
 */
import './quiet';
import type { WorkerInterceptors } from '@temporalio/worker';
import { loadConfig } from '../../workers/config';
import { createWorkers } from '../../workers/worker';
import { workflowBundle } from './env';

function killAfterTool(marker: string): WorkerInterceptors {
  return {
    activity: [
      () => ({
        inbound: {
          async execute(input, next) {
            const result = await next(input);
            if (JSON.stringify(input.args).includes(marker)) {
              console.log('fault: SIGKILL after the command finished, before the activity completed');
              process.kill(process.pid, 'SIGKILL');
              await new Promise(() => undefined);
            }
            return result;
          },
        },
      }),
    ],
  };
}

async function main() {
  const marker = process.env.KEEL_TEST_KILL_AFTER_TOOL;
  const workers = await createWorkers(loadConfig(), {
    workflowBundle: await workflowBundle(),
    sandboxInterceptors: marker ? killAfterTool(marker) : undefined,
  });
  process.once('SIGTERM', () => void workers.shutdown());
  const running = workers.run();
  console.log('ready');
  await running;
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
