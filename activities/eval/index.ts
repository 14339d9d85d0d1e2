/** The eval workflow's activities (workflows/eval.ts). */
export { createEvalActivities, type EvalActivityDeps } from './activities';
