/**
 * The read side: what a session did, built from the event log and the blob
 * store. Shared by the CLI and (later) the HTTP API, so both show the same thing.
 */
export { follow } from './follow';
export { loadManifest, stepDiff, stepSnapshots, type StepDiff } from './step-diff';
export { stepsOf, type StepSummary } from './steps';
export { asText, TEXT_DIFF_LIMIT, unifiedDiff } from './text-diff';
export { eventBytes, historyBytes, sessionHistories, type RunHistory } from './histories';
export { reconcileLive, reconcileSession } from './reconcile';
export { forkSpec, planFork } from './fork';
