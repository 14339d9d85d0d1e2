/** Background jobs of a worker process: run a task every so often, never two at once, never keeping the process alive. */

/** Run `task` every `intervalSec` until the returned stop function is called; failures are logged, not thrown. */
export function every(intervalSec: number, name: string, task: () => Promise<unknown>, log: (msg: string) => void = () => {}): () => void {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    task()
      .catch((err) => log(`${name}: ${(err as Error).message}`))
      .finally(() => (running = false));
  }, intervalSec * 1000);
  timer.unref();
  return () => clearInterval(timer);
}
