/** Every workflow a Keel worker registers. Deterministic code only: see workflows/session.ts. */
export { agentSession, cancelSignal, closeSignal, messageSignal, statusQuery, type SessionCarry } from './session';
export { approvalSignal, approvalUpdate, budgetSignal, budgetUpdate, type ApprovalAnswer, type BudgetAddition } from './operator';
export { evalSandbox, evalSuite, type EvalSandboxInput, type EvalSandboxResult } from './eval';
