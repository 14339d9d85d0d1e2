/**
 * MCP activities against real servers run over stdio, outside Temporal: the reference memory
 * server from npm (@modelcontextprotocol/server-memory, not written here) and a deliberately
 * faulty one (test/fixtures/mcp-faulty-server.js). Listing, a real call, schema validation, and
 * each kind of server failure as an error result; configuration errors name the fix.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createMcpActivities, McpPool, parseMcpConfig, resolveMcpConfig } from '../../activities/mcp';
import { contractDifferences, modelContract } from '../../audit/contract';
import { StartSession } from '../../api/schemas';
import { DirBlobStore } from '../../blobs';
import { runSpec } from '../../cli/sessions';
import { failureTypeOf } from '../../common/failures';
import type { McpTool } from '../../common/mcp';

const dir = mkdtempSync(join(tmpdir(), 'keel-mcp-'));
const memoryFile = join(dir, 'memory.jsonl');
const memoryServer = require.resolve('@modelcontextprotocol/server-memory/dist/index.js');
const faulty = join(__dirname, '..', 'fixtures', 'mcp-faulty-server.js');

const config = parseMcpConfig(
  JSON.stringify({
    mcpServers: {
      memory: { command: process.execPath, args: [memoryServer], env: { MEMORY_FILE_PATH: memoryFile } },
      crashy: { command: process.execPath, args: [faulty, 'crash'] },
      hangs: { command: process.execPath, args: [faulty, 'hang'] },
      garbled: { command: process.execPath, args: [faulty, 'malformed'] },
      refuses: { command: process.execPath, args: [faulty, 'iserror'] },
      broken: { command: process.execPath, args: [faulty, 'nostart'] },
      missing: { command: '/nonexistent/mcp-server' },
      nohttp: { url: 'http://127.0.0.1:9/mcp?token=hush' },
    },
  }),
  'test',
  { callTimeoutSec: 2, startTimeoutSec: 10 },
);
const pool = new McpPool(config);
const mcp = createMcpActivities({ pool, blobs: new DirBlobStore(join(dir, 'blobs')) });
after(() => pool.close());

const call = (tool: McpTool, id: string, input: unknown) => mcp.callMcpTool({ sessionId: 's', call: { id, name: tool.name, input }, tool });

describe('the reference memory server', () => {
  let tools: McpTool[];
  test('lists its tools as memory__<tool> with their JSON Schemas', async () => {
    ({ tools } = await mcp.listMcpTools({ servers: ['memory'] }));
    const names = tools.map((t) => t.name);
    assert.ok(names.includes('memory__create_entities'), names.join(', '));
    assert.ok(names.includes('memory__read_graph'));
    const create = tools.find((t) => t.name === 'memory__create_entities')!;
    assert.equal(create.server, 'memory');
    assert.equal(create.tool, 'create_entities');
    assert.equal((create.inputSchema as { type?: string }).type, 'object');
    // The contract lists them beside the built-in tools, each with its schema's hash.
    const contract = modelContract({ provider: 'scripted', model: 'x' }, tools);
    const entry = contract.tools.find((t) => t.name === 'memory__create_entities');
    assert.match(entry?.schemaSha ?? '', /^[0-9a-f]{64}$/);
    assert.ok(contract.tools.some((t) => t.name === 'shell'));
    // keel audit rerun does not start MCP servers: a recorded session's MCP tools are not reported removed...
    const recorded = { ...contract, model: { ...contract.model } };
    assert.deepEqual(contractDifferences(recorded, { model: modelContract({ provider: 'scripted', model: 'x' }) }), []);
    // ...but when today's side lists them, a changed schema is drift.
    const changed = tools.map((t) => (t.name === 'memory__read_graph' ? { ...t, description: 'changed' } : t));
    const diff = contractDifferences(recorded, { model: modelContract({ provider: 'scripted', model: 'x' }, changed) });
    assert.deepEqual(diff.map((d) => d.field), ['tool memory__read_graph']);
  });

  test('a call gets the real result, and the server really stored it', async () => {
    const create = tools.find((t) => t.name === 'memory__create_entities')!;
    const r = await call(create, 'c1', { entities: [{ name: 'Keel', entityType: 'project', observations: ['runs agents durably'] }] });
    assert.equal(r.ok, true, r.output);
    assert.match(r.output, /Keel/);
    const read = await call(tools.find((t) => t.name === 'memory__read_graph')!, 'c2', {});
    assert.equal(read.ok, true, read.output);
    assert.match(read.output, /runs agents durably/);
    assert.match(readFileSync(memoryFile, 'utf8'), /runs agents durably/);
  });

  test('arguments that break the schema are an InvalidArguments result, and never reach the server', async () => {
    const create = tools.find((t) => t.name === 'memory__create_entities')!;
    const r = await call(create, 'c3', { entities: 'not a list' });
    assert.equal(r.ok, false);
    assert.equal(r.error, 'InvalidArguments');
    assert.match(r.output, /Invalid arguments for memory__create_entities: \/entities must be array/);
    const read = await call(tools.find((t) => t.name === 'memory__read_graph')!, 'c4', {});
    assert.doesNotMatch(read.output, /not a list/);
  });

  test('the same call id twice is one call (a retried activity does not call the server again)', async () => {
    const create = tools.find((t) => t.name === 'memory__create_entities')!;
    const input = { entities: [{ name: 'Twice', entityType: 'test', observations: ['once'] }] };
    const first = await call(create, 'dup', input);
    const second = await call(create, 'dup', input);
    assert.deepEqual(second, first);
    const graph = readFileSync(memoryFile, 'utf8');
    assert.equal(graph.match(/"name":"Twice"/g)?.length, 1);
  });
});

describe('faulty servers give error results, and start again on the next call', () => {
  test('a server that exits during a call', async () => {
    const [echo] = (await mcp.listMcpTools({ servers: ['crashy'] })).tools;
    const r = await call(echo!, 'x1', { text: 'hi' });
    assert.equal(r.ok, false);
    assert.equal(r.error, 'McpError');
    assert.match(r.output, /MCP server "crashy" exited during the call .*it starts again on the next call/);
    // Started again for the next call (which it crashes on too, as it does).
    const again = await call(echo!, 'x2', { text: 'hi' });
    assert.equal(again.error, 'McpError');
    assert.match(again.output, /MCP server "crashy" exited during the call/);
  });

  test('a server that does not answer in time', async () => {
    const [echo] = (await mcp.listMcpTools({ servers: ['hangs'] })).tools;
    const started = Date.now();
    const r = await call(echo!, 'h1', { text: 'hi' });
    assert.equal(r.ok, false);
    assert.equal(r.error, 'Timeout');
    assert.match(r.output, /MCP server "hangs" did not answer within 2 s/);
    assert.ok(Date.now() - started < 10_000);
    // Stopped and started again: the next call times out the same way (not "Not connected").
    const again = await call(echo!, 'h2', { text: 'hi' });
    assert.match(again.output, /did not answer within 2 s/);
  });

  test('a server that answers with a malformed result', async () => {
    const [echo] = (await mcp.listMcpTools({ servers: ['garbled'] })).tools;
    const r = await call(echo!, 'm1', { text: 'hi' });
    assert.equal(r.ok, false);
    assert.equal(r.error, 'McpError');
    assert.match(r.output, /MCP server "garbled" failed or returned a malformed result/);
  });
});

test('a tool that reports an error is a ToolError result with its text', async () => {
  const [echo] = (await mcp.listMcpTools({ servers: ['refuses'] })).tools;
  const r = await call(echo!, 'e1', { text: 'abc' });
  assert.deepEqual({ ok: r.ok, error: r.error, output: r.output }, { ok: false, error: 'ToolError', output: 'no such text: abc' });
});

describe('a server reached over streamable HTTP: the reference "everything" server', () => {
  let child: ChildProcess | undefined;
  after(() => {
    child?.kill();
  });

  test('lists its tools and answers a call; bad arguments never reach it', { timeout: 60_000 }, async () => {
    const port = await freePort();
    child = spawn(process.execPath, [require.resolve('@modelcontextprotocol/server-everything/dist/index.js'), 'streamableHttp'], {
      env: { ...process.env, PORT: String(port) },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    await new Promise<void>((resolve, reject) => {
      let err = '';
      child!.stderr!.on('data', (c: Buffer) => {
        err += c.toString();
        if (/listening on port/.test(err)) resolve();
      });
      child!.on('exit', (code) => reject(new Error(`server-everything exited ${code}: ${err}`)));
    });
    const httpPool = new McpPool(parseMcpConfig(JSON.stringify({ mcpServers: { everything: { url: `http://127.0.0.1:${port}/mcp`, headers: { 'X-Test': 'yes' } } } }), 'test'));
    const http = createMcpActivities({ pool: httpPool, blobs: new DirBlobStore(join(dir, 'blobs-http')) });
    try {
      const { tools } = await http.listMcpTools({ servers: ['everything'] });
      const echo = tools.find((t) => t.name === 'everything__echo');
      assert.ok(echo, tools.map((t) => t.name).join(', '));
      const r = await http.callMcpTool({ sessionId: 's', call: { id: 'e1', name: echo.name, input: { message: 'over http' } }, tool: echo });
      assert.equal(r.ok, true, r.output);
      assert.match(r.output, /over http/);
      const bad = await http.callMcpTool({ sessionId: 's', call: { id: 'e2', name: echo.name, input: { message: 42 } }, tool: echo });
      assert.equal(bad.error, 'InvalidArguments');
      assert.match(bad.output, /\/message must be string/);
    } finally {
      await httpPool.close();
    }
  });
});

test('an HTTP server gets its configured headers (e.g. a token) on every request', async () => {
  const seen: string[] = [];
  const srv = createHttpServer((req, res) => {
    seen.push(String(req.headers.authorization));
    res.writeHead(503).end();
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as AddressInfo;
  const p = new McpPool(parseMcpConfig(JSON.stringify({ mcpServers: { tok: { url: `http://127.0.0.1:${port}/mcp`, headers: { Authorization: 'Bearer hush' } } } }), 'test'));
  try {
    await assert.rejects(createMcpActivities({ pool: p, blobs: new DirBlobStore(join(dir, 'blobs-tok')) }).listMcpTools({ servers: ['tok'] }), (err: Error) => {
      assert.match(err.message, /MCP server "tok" did not answer at http:\/\/127\.0\.0\.1:\d+\/mcp/);
      assert.doesNotMatch(err.message, /hush/);
      return true;
    });
    assert.ok(seen.length > 0 && seen.every((h) => h === 'Bearer hush'), seen.join(', '));
  } finally {
    await p.close();
    srv.close();
  }
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

describe('servers that cannot be used name themselves and the fix', () => {
  test('a server that exits at start: its name, command and stderr', async () => {
    await assert.rejects(mcp.listMcpTools({ servers: ['broken'] }), (err: Error) => {
      assert.equal(failureTypeOf(err), 'Mcp.Unavailable');
      assert.match(err.message, /MCP server "broken" did not start/);
      assert.match(err.message, /refusing to start/);
      assert.match(err.message, /Check its "command" and "args" in KEEL_MCP_CONFIG/);
      return true;
    });
  });

  test('a command that does not exist', async () => {
    await assert.rejects(mcp.listMcpTools({ servers: ['missing'] }), /MCP server "missing" did not start \(\/nonexistent\/mcp-server\)/);
  });

  test('an HTTP server that does not answer: its origin and path, never its query', async () => {
    await assert.rejects(mcp.listMcpTools({ servers: ['nohttp'] }), (err: Error) => {
      assert.equal(failureTypeOf(err), 'Mcp.Unavailable');
      assert.match(err.message, /MCP server "nohttp" did not answer at http:\/\/127\.0\.0\.1:9\/mcp: .*Check that it runs and its "url" and "headers"/);
      assert.doesNotMatch(err.message, /token=/);
      return true;
    });
  });

  test('a server the worker does not configure', async () => {
    await assert.rejects(mcp.listMcpTools({ servers: ['nosuch'] }), (err: Error) => {
      assert.equal(failureTypeOf(err), 'Mcp.NotConfigured');
      assert.match(err.message, /MCP server "nosuch" is not configured on this worker \(configured: memory, crashy/);
      return true;
    });
  });
});

test('keel run --mcp names servers in the spec (once each); the API schema takes them', () => {
  const spec = runSpec('t', { model: 'openai:gpt-4o', mcp: ['memory', 'github', 'memory'] });
  assert.deepEqual(spec.mcp, ['memory', 'github']);
  assert.equal(runSpec('t', { model: 'openai:gpt-4o' }).mcp, undefined);
  assert.ok(StartSession.safeParse({ task: 't', model: { provider: 'openai', model: 'm' }, mcp: ['memory'] }).success);
  assert.ok(!StartSession.safeParse({ task: 't', model: { provider: 'openai', model: 'm' }, mcp: ['a__b'] }).success);
});

describe('KEEL_MCP_CONFIG', () => {
  test('unset: no servers', () => {
    assert.deepEqual(resolveMcpConfig({}).servers, {});
  });

  test('a file in the usual mcpServers shape', () => {
    const file = join(dir, 'servers.json');
    writeFileSync(file, JSON.stringify({ mcpServers: { memory: { command: 'npx', args: ['-y', 'x'], env: { TOKEN: 'secret' } } } }));
    const c = resolveMcpConfig({ KEEL_MCP_CONFIG: file, KEEL_MCP_CALL_TIMEOUT_SEC: '30' });
    assert.deepEqual(c.servers.memory, { command: 'npx', args: ['-y', 'x'], env: { TOKEN: 'secret' } });
    assert.equal(c.callTimeoutMs, 30_000);
  });

  test('bad configurations are refused with what to fix', () => {
    const bad = (text: string, re: RegExp) => assert.throws(() => parseMcpConfig(text, 'f.json'), re);
    bad('{', /KEEL_MCP_CONFIG f.json: not JSON/);
    bad('{"servers": {}}', /expected \{"mcpServers"/);
    bad('{"mcpServers": {"a__b": {"command": "x"}}}', /server "a__b": a name is/);
    bad('{"mcpServers": {"a": {"args": []}}}', /server "a": "command" must be a non-empty string/);
    bad('{"mcpServers": {"a": {"command": "x", "env": {"K": 1}}}}', /"env" must be an object of string values/);
    bad('{"mcpServers": {"a": {"url": "ftp://x"}}}', /server "a": "url" must be http:\/\/ or https:\/\//);
    bad('{"mcpServers": {"a": {"url": "http://x", "command": "y"}}}', /not both/);
    bad('{"mcpServers": {"a": {"url": "http://x", "headers": {"A": 1}}}}', /"headers" must be an object of string values/);
    assert.throws(() => resolveMcpConfig({ KEEL_MCP_CONFIG: join(dir, 'nope.json') }), /cannot read it \(ENOENT\)/);
    assert.throws(() => parseMcpConfig('{"mcpServers": {}}', 'f', { callTimeoutSec: 999 }), /KEEL_MCP_CALL_TIMEOUT_SEC must be between 1 and 240/);
  });
});
