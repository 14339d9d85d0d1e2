/**
 * Fake activities for workflow unit tests. Never used by a test that claims
 * durability, isolation or audit: those run on real Docker and Postgres.
 */
import { Context } from '@temporalio/activity';
import type { ModelActivities, SandboxActivities, StoreActivities } from '../../common/activities';
import type { SessionEvent } from '../../common/events';
import type { Message, ModelTurn, ToolCall, ToolResult } from '../../common/types';

export const FAKE_HOST_QUEUE = 'keel-sandbox-fake';

export interface Fakes {
  activities: { session: ModelActivities & StoreActivities; sandbox: SandboxActivities };
  events: SessionEvent[];
  toolRuns: ToolCall[];
  modelInputs: Message[][];
  destroyed: string[];
  provisions: Array<{ generation?: number; restoreFrom?: string }>;
}

export interface FakeOptions {
  toolDelayMs?: number;
  /** The first container's host has no worker: its tasks stay queued. */
  deadFirstHost?: boolean;
}

/**
 * The transcript a model call sees, from the fake event log: the task, then the window's model turns,
 * tool results and messages. (The real activity reads the same events from Postgres.)
 */
function transcriptOf(events: readonly SessionEvent[], window: { fromSeq: number; throughSeq: number }): Message[] {
  const started = events.find((e) => e.type === 'session.started');
  const out: Message[] = [{ role: 'user', text: started?.type === 'session.started' ? started.data.task : '' }];
  for (const e of [...events].sort((a, b) => a.seq - b.seq)) {
    if (e.seq < window.fromSeq || e.seq > window.throughSeq) continue;
    if (e.type === 'message.user') out.push({ role: 'user', text: e.data.text });
    if (e.type === 'model.call') out.push({ role: 'assistant', ...(e.data.text ? { text: e.data.text } : {}), toolCalls: e.data.toolCalls });
    if (e.type === 'tool.result') {
      const { step: _step, snapshot: _snapshot, ...result } = e.data;
      const last = out[out.length - 1];
      if (last?.role === 'tool') last.results.push(result);
      else out.push({ role: 'tool', results: [result] });
    }
  }
  return out;
}

/** A fake model that plays `turns` in order and fails loudly when it runs out. */
export function createFakes(turns: Array<Partial<ModelTurn>>, opts: FakeOptions = {}): Fakes {
  const f: Fakes = {
    provisions: [],
    events: [],
    toolRuns: [],
    modelInputs: [],
    destroyed: [],
    activities: undefined as unknown as Fakes['activities'],
  };
  let turn = 0;
  let snapshots = 0;
  f.activities = {
    session: {
      async callModel({ messages, window }) {
        f.modelInputs.push(structuredClone(messages ?? transcriptOf(f.events, window ?? { fromSeq: 0, throughSeq: Infinity })));
        const t = turns[turn++];
        if (!t) throw new Error(`fake model ran out of turns at turn ${turn}`);
        return { toolCalls: [], finishReason: 'stop', usage: { inputTokens: 10, outputTokens: 5 }, durationMs: 1, ...t };
      },
      async readOutput({ call }) {
        const wanted = (call.input as { callId?: string }).callId;
        const found = f.events.find((e) => e.type === 'tool.result' && e.data.callId === wanted);
        const output = found?.type === 'tool.result' ? found.data.output : `no call ${wanted}`;
        return { callId: call.id, name: call.name, ok: found !== undefined, output };
      },
      async describeRuntime({ model }) {
        return { model: { provider: model.provider, model: model.model, maxOutputTokens: 4096 }, tools: [], keelVersion: 'fake' };
      },
      async copyTranscript() {
        throw new Error('the fake store does not fork');
      },
      async admitSession() {
        return { admitted: true, running: 1 };
      },
      async chargeTenant() {
        return { ok: true, tokens: 0, usd: 0 };
      },
      async recordEvents({ events }) {
        for (const e of events) if (!f.events.some((x) => x.seq === e.seq)) f.events.push(e);
        return undefined; // a fake log keeps no chain
      },
    },
    sandbox: {
      async provisionSandbox({ sessionId, generation, restoreFrom }) {
        f.provisions.push({ generation, restoreFrom });
        const dead = opts.deadFirstHost && f.provisions.length === 1;
        return {
          containerId: `fake-${sessionId}-${generation}`,
          hostQueue: dead ? 'keel-sandbox-dead' : FAKE_HOST_QUEUE,
          toolHeartbeatMs: 400,
          hostId: dead ? 'dead' : 'fake',
          image: 'fake:latest',
          generation,
          restoredFrom: restoreFrom,
        };
      },
      async runTool({ call, snapshot }): Promise<ToolResult> {
        f.toolRuns.push(call);
        if (opts.toolDelayMs) {
          // Like the real activity, a long call heartbeats (its heartbeat timeout is 1.5 s).
          const ctx = Context.current();
          const beat = setInterval(() => ctx.heartbeat(), 400);
          await new Promise((r) => setTimeout(r, opts.toolDelayMs)).finally(() => clearInterval(beat));
        }
        const result: ToolResult = { callId: call.id, name: call.name, ok: true, output: `ran ${call.name}`, exitCode: 0, durationMs: 1 };
        if (snapshot) {
          result.snapshot = {
            id: `snap-${++snapshots}`, parent: snapshot.parent, files: 1, bytes: 1, added: 1, modified: 0, removed: 0,
            changedBytes: 1, uploadedBytes: 1, durationMs: 1,
          };
        }
        return result;
      },
      async snapshotSandbox() {
        return null;
      },
      async destroySandbox({ sessionId }) {
        f.destroyed.push(sessionId);
        return { removed: true };
      },
      async listSandboxMcpTools() {
        return { tools: [], skipped: [] };
      },
      async callSandboxMcpTool({ call }) {
        return { callId: call.id, name: call.name, ok: false, error: 'UnknownTool', output: 'the fake sandbox runs no MCP servers' };
      },
    },
  };
  return f;
}
