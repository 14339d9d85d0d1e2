/**
 * Every request and response body of the HTTP API, defined once: Fastify validates requests
 * and serialises responses with them, and `/openapi.json` is generated from them. Objects are
 * strict, so a misspelt field is refused by name rather than ignored.
 *
 * Deeper checks that the CLI also needs (policy patterns, sandbox limits, budgets) stay in
 * `validateSpec` (client/), run on every start; its messages name the field too.
 */
import { z } from 'zod';
import { WEBHOOK_EVENTS } from '../common/webhooks';

const positiveInt = z.number().int().positive();

export const ScriptTurn = z.strictObject({
  text: z.string().optional(),
  toolCalls: z.array(z.strictObject({ name: z.string(), input: z.unknown() })).optional(),
});

export const ModelSpec = z
  .strictObject({
    provider: z.enum(['scripted', 'anthropic', 'openai', 'openai-compatible']),
    model: z.string().min(1),
    baseURL: z.url().optional().describe('openai-compatible only'),
    script: z.array(ScriptTurn).optional().describe('the turns a scripted model plays'),
    maxOutputTokens: positiveInt.optional(),
    price: z.strictObject({ inputPerMTok: z.number().nonnegative(), outputPerMTok: z.number().nonnegative() }).optional(),
    contextTokens: z.number().int().min(4096).optional(),
  })
  .describe('which model drives the session; API keys are the worker\'s, never in the spec');

export const Budgets = z.strictObject({
  inputTokens: positiveInt.optional(),
  outputTokens: positiveInt.optional(),
  usd: z.number().positive().optional(),
  wallClockSec: positiveInt.optional(),
  toolCalls: positiveInt.optional(),
});

const PolicyAction = z.enum(['allow', 'deny', 'ask']);

export const ApprovalPolicy = z.strictObject({
  default: PolicyAction.optional(),
  rules: z
    .array(
      z.strictObject({
        tool: z.string(),
        action: PolicyAction,
        command: z.string().optional(),
        path: z.string().optional(),
        reason: z.string().optional(),
        exact: z.string().optional(),
      }),
    )
    .optional(),
  timeoutSec: positiveInt.optional(),
});

export const SandboxSpec = z.strictObject({
  image: z.string().optional(),
  memoryMb: positiveInt.optional(),
  cpus: z.number().positive().optional(),
  pidsLimit: positiveInt.optional(),
  idleSuspendSec: z.number().nonnegative().optional(),
  hostTimeoutSec: positiveInt.optional(),
  runtime: z.string().optional().describe('Docker runtime: runc, or runsc (gVisor) where the host has it'),
  diskMb: positiveInt.optional(),
  network: z.strictObject({ allow: z.array(z.strictObject({ host: z.string(), ports: z.array(positiveInt).optional() })) }).optional()
    .describe('hosts the sandbox may reach through the egress proxy; default no network'),
});

export const WebhookSpec = z.strictObject({
  url: z.string().describe('http(s) URL told by a signed POST when the session waits, runs out of budget or ends'),
  events: z.array(z.enum(WEBHOOK_EVENTS)).min(1).optional(),
});

export const FaultInjection = z.strictObject({
  seed: z.number().int(),
  rules: z.array(z.strictObject({ tool: z.string(), rate: z.number().min(0).max(1), fault: z.enum(['error', 'timeout', 'truncated', 'nonzero']) })),
});

/** A seed already in the blob store (`uploadWorkspace` from `keel/client/workspace`, `keel run --workspace`). */
export const WorkspaceSeed = z
  .strictObject({
    snapshot: z.string().regex(/^[0-9a-f]{64}$/),
    files: z.number().int().nonnegative(),
    bytes: z.number().int().nonnegative(),
    uploadedBytes: z.number().int().nonnegative().optional(),
    source: z.string().max(2000).optional(),
  })
  .describe('what /workspace starts with: a snapshot stored in the blob store the sandbox hosts read');

/** A session spec as `keel run` builds it; the tenant is the API key's. */
export const StartSession = z.strictObject({
  id: z.string().regex(/^[A-Za-z0-9._:-]{1,200}$/).optional().describe('session id (default: generated)'),
  task: z.string().min(1),
  model: ModelSpec,
  sandbox: SandboxSpec.optional(),
  maxSteps: positiveInt.optional(),
  systemPrompt: z.string().optional(),
  keepAlive: z.boolean().optional(),
  idleTimeoutSec: positiveInt.optional(),
  stepsPerRun: positiveInt.optional(),
  policy: ApprovalPolicy.optional(),
  budgets: Budgets.optional(),
  inject: FaultInjection.optional(),
  mcp: z
    .array(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9-]{0,31}$/))
    .max(16)
    .optional()
    .describe('MCP servers (by the names in the session workers\' KEEL_MCP_CONFIG) whose tools the session is offered as <server>__<tool>'),
  mcpSandbox: z
    .record(
      z.string().regex(/^[A-Za-z0-9][A-Za-z0-9-]{0,31}$/),
      z
        .object({
          command: z.string().min(1),
          args: z.array(z.string()).optional(),
          env: z.record(z.string(), z.string()).optional().describe('recorded in history and events: no secrets (names like *KEY*, *TOKEN*, *SECRET* are refused)'),
          timeoutSec: z.number().int().min(1).max(240).optional(),
        })
        .strict(),
    )
    .optional()
    .describe("stdio MCP servers run inside the session's sandbox as the commands' user (uid 1000, in /workspace); tools offered as <name>__<tool>"),
  webhook: WebhookSpec.optional(),
  queue: z.boolean().optional(),
  messages: z.array(z.string()).optional(),
  workspace: WorkspaceSeed.optional(),
});

export const SessionStatus = z.enum(['running', 'waiting', 'budget_exhausted', 'completed', 'refused', 'step_limit', 'cancelled', 'failed', 'terminated', 'timed_out']);

export const Session = z.object({
  id: z.string(),
  tenant: z.string(),
  task: z.string(),
  model: z.string(),
  status: z.string().describe('a SessionStatus; "starting" before the session recorded its first event'),
  createdAt: z.string().nullable(),
  updatedAt: z.string().nullable(),
  endedAt: z.string().nullable(),
  result: z.record(z.string(), z.unknown()).nullable(),
});

/** A session in a list: its row and what it has done so far. */
export const SessionListItem = Session.extend({
  steps: z.number().describe('tool results recorded'),
  inputTokens: z.number(),
  outputTokens: z.number(),
  usd: z.number().nullable().describe("cost at the model's price; null when the price is unknown"),
});

export const Step = z.object({
  seq: z.number(),
  step: z.number(),
  tool: z.string(),
  args: z.string(),
  ok: z.boolean(),
  exitCode: z.number().optional(),
  error: z.string().optional(),
  durationMs: z.number().optional(),
});

export const PendingApproval = z.object({
  callId: z.string(),
  tool: z.string(),
  input: z.unknown(),
  reason: z.string().optional(),
  since: z.string(),
  timeoutSec: z.number(),
});

export const SessionDetail = z.object({
  session: Session,
  steps: z.array(Step),
  budgets: Budgets.partial(),
  spent: z.record(z.string(), z.number()),
  pending: z.array(PendingApproval),
});

export const Event = z.object({
  seq: z.number(),
  type: z.string().describe('an event type, e.g. model.call, tool.result, session.ended (common/events.ts)'),
  at: z.string(),
  data: z.record(z.string(), z.unknown()),
});

export const SessionParams = z.strictObject({ id: z.string().min(1) });
export const StepParams = z.strictObject({ id: z.string().min(1), step: z.coerce.number().int().positive() });

const ManifestEntry = z.object({ path: z.string(), type: z.string() }).passthrough();
/** What `keel diff <id> --step N --json` prints (inspect/step-diff.ts). */
export const StepDiff = z.object({
  sessionId: z.string(),
  step: z.number(),
  before: z.string().optional().describe('the snapshot before the step (absent: the empty sandbox)'),
  after: z.string().optional().describe('the snapshot the step ended with (absent: the step changed no files)'),
  added: z.array(ManifestEntry),
  removed: z.array(ManifestEntry),
  modified: z.array(z.object({ before: ManifestEntry, after: ManifestEntry })),
  textDiffs: z.record(z.string(), z.string()).describe('unified diffs of changed text files under 64 KB, by path'),
});
export const CallParams = z.strictObject({ id: z.string().min(1), callId: z.string().min(1) });

export const ListQuery = z.strictObject({ limit: z.coerce.number().int().min(1).max(500).default(20) });
export const EventsQuery = z.strictObject({
  after: z.coerce.number().int().min(0).default(0).describe('only events after this seq'),
  limit: z.coerce.number().int().min(1).max(10_000).default(1000),
});

export const Message = z.strictObject({ text: z.string().min(1) });
export const Cancel = z.strictObject({ reason: z.string().min(1).optional() });
export const Approve = z.strictObject({ remember: z.boolean().optional(), by: z.string().min(1).optional().describe('who approves (default: the API key id)') });
export const Deny = z.strictObject({ reason: z.string().min(1), by: z.string().min(1).optional() });
export const AddBudget = z.strictObject({ add: Budgets, by: z.string().min(1).optional() });
export const Fork = z.strictObject({
  atStep: positiveInt,
  message: z.string().min(1).optional(),
  model: ModelSpec.optional().describe("another model (default: the original's)"),
  id: StartSession.shape.id,
});

export const Started = z.object({ sessionId: z.string() });
export const Accepted = z.object({ sessionId: z.string(), status: z.string().optional() });

export const VerifyReport = z.object({
  sessionId: z.string(),
  ok: z.boolean(),
  events: z.number(),
  chained: z.number(),
  runs: z.number(),
  anchors: z.number(),
  compared: z.number(),
  blobs: z.number(),
  problems: z.array(z.object({ kind: z.string(), seq: z.number().optional(), message: z.string() })),
  notes: z.array(z.string()),
});

export const ReplayOutcome = z.object({
  sessionId: z.string(),
  runs: z.number(),
  ok: z.boolean(),
  failure: z.object({ runId: z.string(), message: z.string() }).optional(),
});

/** Every error: a stable code and a message that names the field or the session. */
export const ApiError = z.object({
  code: z.enum(['invalid_request', 'unauthorized', 'not_found', 'conflict', 'ended', 'service_unavailable', 'internal']),
  message: z.string(),
});
export type ApiErrorCode = z.infer<typeof ApiError>['code'];
