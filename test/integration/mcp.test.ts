/**
 * MCP tools on real Temporal, Docker and Postgres, with real MCP servers run beside the worker over
 * stdio: the reference memory server from npm (@modelcontextprotocol/server-memory) and a faulty one
 * that exits on its first call (test/fixtures/mcp-faulty-server.js). A scripted session calls memory
 * tools and gets the real results, a bad-arguments call gets a validation error, the crash is an error
 * result and the session completes; the contract lists the MCP tools; the server's env stays out of
 * events and history. A session naming a server the worker lacks fails saying so.
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Docker from 'dockerode';
import type { EventRow } from '../../common/events';
import type { ScriptTurn, SessionSpec } from '../../common/types';
import { getEvents } from '../../store';
import { ensureSandboxImage, uniqueId } from '../helpers/env';
import { recordHistory } from '../helpers/history';
import { startStack, type Stack } from '../helpers/stack';

const dir = mkdtempSync(join(tmpdir(), 'keel-mcp-it-'));
const memoryFile = join(dir, 'memory.jsonl');
/** Stands for a credential in a server's env: it must reach the server only. */
const SECRET = `mcp-secret-${Date.now()}`;
let stack: Stack;

before(async () => {
  await ensureSandboxImage(new Docker());
  const config = join(dir, 'servers.json');
  writeFileSync(
    config,
    JSON.stringify({
      mcpServers: {
        memory: {
          command: process.execPath,
          args: [require.resolve('@modelcontextprotocol/server-memory/dist/index.js')],
          env: { MEMORY_FILE_PATH: memoryFile, MEMORY_API_TOKEN: SECRET },
        },
        crashy: { command: process.execPath, args: [join(__dirname, '..', 'fixtures', 'mcp-faulty-server.js'), 'crash'] },
      },
    }),
  );
  stack = await startStack('mcp-host', { KEEL_MCP_CONFIG: config, KEEL_MCP_CALL_TIMEOUT_SEC: '10' });
});

after(async () => {
  await stack?.stop();
});

const results = (events: EventRow[]) => events.flatMap((e) => (e.type === 'tool.result' ? [e.data] : []));

test('a session calls a real MCP server: real results, a validation error, a crash as an error result, and it completes', { timeout: 180_000 }, async () => {
  const script: ScriptTurn[] = [
    { toolCalls: [{ name: 'memory__create_entities', input: { entities: [{ name: 'Keel', entityType: 'project', observations: ['durable agent runtime'] }] } }] },
    { toolCalls: [{ name: 'memory__create_entities', input: { entities: 'Keel' } }] },
    { toolCalls: [{ name: 'crashy__echo', input: { text: 'hello' } }] },
    { toolCalls: [{ name: 'memory__search_nodes', input: { query: 'Keel' } }] },
    { toolCalls: [{ name: 'shell', input: { command: 'echo built-in still works' } }] },
    { text: 'done' },
  ];
  const spec: SessionSpec = { task: 'remember Keel', model: { provider: 'scripted', model: 'mcp', script }, mcp: ['memory', 'crashy'] };
  const id = uniqueId('mcp');
  await stack.client.start(spec, { sessionId: id });
  const result = await stack.client.result(id);
  assert.equal(result.status, 'completed', result.error);

  const events = await getEvents(stack.sql, id);
  const out = results(events);
  assert.equal(out.length, 5);
  // 1: the real server's answer, and the server really stored it.
  assert.equal(out[0]!.name, 'memory__create_entities');
  assert.equal(out[0]!.ok, true, out[0]!.output);
  assert.match(out[0]!.output, /durable agent runtime/);
  assert.match(readFileSync(memoryFile, 'utf8'), /durable agent runtime/);
  // 2: arguments against the server's schema, checked before the call.
  assert.equal(out[1]!.ok, false);
  assert.equal(out[1]!.error, 'InvalidArguments');
  assert.match(out[1]!.output, /Invalid arguments for memory__create_entities: \/entities must be array/);
  // 3: the server exited on the call: an error result, and the session went on.
  assert.equal(out[2]!.ok, false);
  assert.equal(out[2]!.error, 'McpError');
  assert.match(out[2]!.output, /MCP server "crashy" exited during the call/);
  // 4: the memory server still answers, from what call 1 stored.
  assert.equal(out[3]!.ok, true, out[3]!.output);
  assert.match(out[3]!.output, /durable agent runtime/);
  assert.equal(out[4]!.ok, true);
  assert.match(out[4]!.output, /built-in still works/);

  // Every MCP call is a tool.call / tool.result pair like a built-in one.
  const calls = events.flatMap((e) => (e.type === 'tool.call' ? [e.data.name] : []));
  assert.deepEqual(calls, ['memory__create_entities', 'memory__create_entities', 'crashy__echo', 'memory__search_nodes', 'shell']);

  // The runtime contract lists the MCP tools beside the built-in ones, each with its schema's hash.
  const contract = events.find((e) => e.type === 'session.contract');
  assert.ok(contract?.type === 'session.contract');
  const names = contract.data.tools.map((t) => t.name);
  assert.ok(names.includes('shell'));
  assert.ok(names.includes('memory__create_entities'), names.join(', '));
  assert.ok(names.includes('crashy__echo'));

  // The server's env (credentials) went to its process only: not in events, not in workflow history.
  const history = await stack.client.temporal.workflow.getHandle(id).fetchHistory();
  assert.ok(!JSON.stringify(history).includes(SECRET), 'the secret is not in history');
  assert.ok(!JSON.stringify(events).includes(SECRET), 'the secret is not in the event log');
  // The tools came from an activity (recorded in history), not from workflow code.
  const scheduled = history.events?.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'listMcpTools') ?? [];
  assert.equal(scheduled.length, 1);
  await recordHistory(stack.client.temporal, id, 'mcp-session.json');
});

test('a session naming a server the worker does not configure fails, naming it and the fix', { timeout: 120_000 }, async () => {
  const spec: SessionSpec = { task: 'x', model: { provider: 'scripted', model: 'mcp', script: [{ text: 'done' }] }, mcp: ['github'] };
  const id = uniqueId('mcp-missing');
  await stack.client.start(spec, { sessionId: id });
  const result = await stack.client.result(id);
  assert.equal(result.status, 'failed');
  assert.match(result.error ?? '', /MCP server "github" is not configured on this worker \(configured: memory, crashy\); add it under "mcpServers"/);
});
