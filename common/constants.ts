/** Keel's version, recorded in every session's runtime contract. Keep in step with package.json (a unit test checks). */
export const KEEL_VERSION = '0.2.0';

/** Task queue the session workflows, model and store activities poll. */
export const SESSION_QUEUE = 'keel-sessions';
/** Shared queue every sandbox-host worker polls for provisioning; later calls go to the host's own queue. */
export const SANDBOX_QUEUE = 'keel-sandbox';
/** Signal and query names, as clients see them. */
export const MESSAGE_SIGNAL = 'message';
export const CANCEL_SIGNAL = 'cancel';
/** Ends a kept-alive session instead of waiting for the next message. */
export const CLOSE_SIGNAL = 'close';
export const STATUS_QUERY = 'status';
/** A person's answer to a call waiting for approval: an update (the caller learns at once if it was accepted) or a signal. */
export const APPROVAL_UPDATE = 'approve';
export const APPROVAL_SIGNAL = 'approval';
/** Budget added to a session: an update or a signal. */
export const BUDGET_UPDATE = 'addBudget';
export const BUDGET_SIGNAL = 'budget';

export const DEFAULT_SYSTEM_PROMPT = [
  'You are an autonomous software engineer working inside a sandboxed Linux container (Debian, bash, python3, git).',
  'Your working directory is /workspace. The sandbox has no network access.',
  'Use the tools to inspect and change files and to run commands. Verify your work by running it.',
  'When the task is done, reply with a short summary of what you did and call no tool.',
].join('\n');

/** The task queue of one sandbox host: every sandbox activity of a session after provisioning goes there. */
export function hostQueueFor(hostId: string): string {
  return `${SANDBOX_QUEUE}-${hostId}`;
}
