/**
 * A Keel worker in its own process, for tests that kill it with SIGKILL.
 * Configured by the environment like `keel worker`; prints "ready" once polling.
 *
 * Fault injection (tests only): with KEEL_TEST_KILL_AFTER_TOOL=<text>, the
 * process SIGKILLs itself after the first runTool whose call mentions <text>
 * has finished in the sandbox but before the activity reports completion:
 * the window in which an at-least-once activity would run a command twice.
 * With KEEL_TEST_KILL_AT_NEW_RUN=1, it SIGKILLs itself when a model call of a
 * session's second workflow run starts (just after a continue-as-new).
 */
import './quiet';
import { Context } from '@temporalio/activity';
import type { WorkerInterceptors } from '@temporalio/worker';
import { loadConfig } from '../../workers/config';
import { exitGracefully } from '../../workers/signals';
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

function killAtNewRun(): WorkerInterceptors {
  const firstRun = new Map<string, string>();
  return {
    activity: [
      () => ({
        inbound: {
          async execute(input, next) {
            const wf = Context.current().info.workflowExecution;
            if (wf && !firstRun.has(wf.workflowId)) firstRun.set(wf.workflowId, wf.runId);
            else if (wf && firstRun.get(wf.workflowId) !== wf.runId) {
              console.log('fault: SIGKILL at the first activity of a new workflow run');
              process.kill(process.pid, 'SIGKILL');
              await new Promise(() => undefined);
            }
            return next(input);
          },
        },
      }),
    ],
  };
}

async function main() {
  const marker = process.env.KEEL_TEST_KILL_AFTER_TOOL;
  const config = loadConfig();
  const workers = await createWorkers(config, {
    workflowBundle: await workflowBundle(),
    sandboxInterceptors: marker ? killAfterTool(marker) : undefined,
    sessionInterceptors: process.env.KEEL_TEST_KILL_AT_NEW_RUN ? killAtNewRun() : undefined,
  });
  exitGracefully(workers, config.shutdownGraceSec, (msg) => console.log(msg));
  const running = workers.run();
  console.log('ready');
  await running;
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
