/** Every workflow a Keel worker registers. Deterministic code only: see workflows/session.ts. */
export { agentSession, messageSignal, cancelSignal, statusQuery } from './session';
