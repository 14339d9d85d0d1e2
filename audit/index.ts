/**
 * Auditing a session for someone who does not trust the operator: chain and
 * history checks, archives that outlive Temporal's retention, replay against
 * today's code, re-execution of recorded tool calls (runtime drift), offline bundles,
 * and blob garbage collection under a retention policy.
 */
export { archiveEnded, archiveSession, loadHistories, readArchive, ARCHIVE_FORMAT, type RunHistories } from './archive';
export { bundleBlobs, readBundle, writeBundle, BUNDLE_FORMAT, type Bundle } from './bundle';
export { contractDifferences, modelContract, recordedContract, type ContractDifference } from './contract';
export { collectGarbage, referencesOf, type GcOptions, type GcReport } from './gc';
export { activitiesOf, anchorsOf, historyFromJson, historyToJson, startArgs, type History } from './history';
export { currentWorkflows, replaySession, type ReplayOutcome } from './replay';
export { rerunSession, runRecordedCall, type RerunOptions, type RerunReport, type RerunSandbox, type RerunStep } from './rerun';
export { NORMALISATION, type Difference, type RerunClass } from './rerun-compare';
export { recordedCalls, type RecordedCall } from './rerun-plan';
export { replayScript, replaySessionModel, type ReplayOptions, type ReplayReport, type ReplayStep } from './rerun-replay';
export { replayLive, verifyLive, type LiveServices } from './live';
export { liveEvidence, verifySession, type Evidence, type Finding, type VerifyReport } from './verify';
