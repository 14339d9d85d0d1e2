/**
 * Fake activities for workflow unit tests. Never used by a test that claims
 * durability, isolation or audit: those run on real Docker and Postgres.
 */
import type { ModelActivities, SandboxActivities, StoreActivities } from '../../common/activities';
import type { Message, ModelTurn, SessionEvent, ToolCall, ToolResult } from '../../common/types';

export const FAKE_HOST_QUEUE = 'keel-sandbox-fake';

export interface Fakes {
  activities: { session: ModelActivities & StoreActivities; sandbox: SandboxActivities };
  events: SessionEvent[];
  toolRuns: ToolCall[];
  modelInputs: Message[][];
  destroyed: string[];
}

/** A fake model that plays `turns` in order and fails loudly when it runs out. */
export function createFakes(turns: Array<Partial<ModelTurn>>, opts: { toolDelayMs?: number } = {}): Fakes {
  const f: Fakes = {
    events: [],
    toolRuns: [],
    modelInputs: [],
    destroyed: [],
    activities: undefined as unknown as Fakes['activities'],
  };
  let turn = 0;
  f.activities = {
    session: {
      async callModel({ messages }) {
        f.modelInputs.push(structuredClone(messages));
        const t = turns[turn++];
        if (!t) throw new Error(`fake model ran out of turns at turn ${turn}`);
        return { toolCalls: [], finishReason: 'stop', usage: { inputTokens: 10, outputTokens: 5 }, durationMs: 1, ...t };
      },
      async recordEvents({ events }) {
        for (const e of events) if (!f.events.some((x) => x.seq === e.seq)) f.events.push(e);
      },
    },
    sandbox: {
      async provisionSandbox({ sessionId }) {
        return { containerId: `fake-${sessionId}`, hostQueue: FAKE_HOST_QUEUE, hostId: 'fake', image: 'fake:latest' };
      },
      async runTool({ call }): Promise<ToolResult> {
        f.toolRuns.push(call);
        if (opts.toolDelayMs) await new Promise((r) => setTimeout(r, opts.toolDelayMs));
        return { callId: call.id, name: call.name, ok: true, output: `ran ${call.name}`, exitCode: 0, durationMs: 1 };
      },
      async snapshotSandbox() {
        return null;
      },
      async destroySandbox({ sessionId }) {
        f.destroyed.push(sessionId);
        return { removed: true };
      },
    },
  };
  return f;
}
