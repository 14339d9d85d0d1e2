/**
 * How a worker process answers SIGTERM and SIGINT (an orchestrator's stop, Ctrl-C): the first stops polling
 * and lets running tool calls finish (up to `KEEL_SHUTDOWN_GRACE_SEC`), so a rolling restart costs no retry;
 * a second exits at once, as a crash would, which the idempotency journal makes safe.
 */
import type { KeelWorkers } from './worker';

export function exitGracefully(workers: KeelWorkers, graceSec: number, log: (msg: string) => void = (m) => console.error(m)): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      log(`keel worker: second ${signal}; exiting now (running tool calls are retried elsewhere)`);
      process.exit(1);
    }
    stopping = true;
    log(`keel worker: ${signal}; no new tasks, running tool calls have ${graceSec} s to finish (${signal} again exits now)`);
    void workers.shutdown();
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, onSignal);
}
