/** The shape of SessionSpec.mcpSandbox and `--mcp-sandbox file.json`: clear errors before anything starts. */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { readSandboxMcp } from '../../cli/sessions';
import { sandboxMcpProblems } from '../../common/mcp';
import { StartSession as SessionSpec } from '../../api/schemas';

test('sandboxMcpProblems accepts a stdio server and names each problem', () => {
  assert.deepEqual(sandboxMcpProblems({ git: { command: 'python3', args: ['-m', 'mcp_server_git'], env: { GIT_PAGER: 'cat' }, timeoutSec: 30 } }), []);
  assert.deepEqual(sandboxMcpProblems(undefined), []);
  const problems = sandboxMcpProblems({
    'a__b': { command: 'x' },
    nocmd: { args: ['x'] },
    secret: { command: 'x', env: { GITHUB_TOKEN: 'ghp_x', 'bad name': 'y' } },
    slow: { command: 'x', timeoutSec: 1000 },
    extra: { command: 'x', url: 'http://x' },
    both: { command: 'x' },
  }, ['both']);
  const text = problems.join('\n');
  assert.match(text, /mcpSandbox\.a__b: a name is 1-32 letters/);
  assert.match(text, /mcpSandbox\.nocmd\.command must be a non-empty string/);
  assert.match(text, /mcpSandbox\.secret\.env\.GITHUB_TOKEN looks like a credential/);
  assert.match(text, /mcpSandbox\.secret\.env: "bad name" is not a variable name/);
  assert.match(text, /mcpSandbox\.slow\.timeoutSec must be an integer from 1 to 240/);
  assert.match(text, /mcpSandbox\.extra\.url is not a field/);
  assert.match(text, /mcpSandbox\.both: "both" is also in mcp/);
  assert.deepEqual(sandboxMcpProblems(['x']), ['mcpSandbox must be an object: {"<name>": {"command": "...", "args": [...]}}']);
});

test('--mcp-sandbox reads {"mcpServers": ...} and refuses HTTP servers and other shapes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'keel-mcp-sandbox-'));
  const file = (name: string, body: unknown) => {
    const p = join(dir, name);
    writeFileSync(p, typeof body === 'string' ? body : JSON.stringify(body));
    return p;
  };
  assert.deepEqual(readSandboxMcp(file('ok.json', { mcpServers: { git: { command: 'python3', args: ['-m', 'mcp_server_git'] } } })), {
    git: { command: 'python3', args: ['-m', 'mcp_server_git'] },
  });
  assert.throws(() => readSandboxMcp(join(dir, 'missing.json')), /--mcp-sandbox .*missing\.json: no such file/);
  assert.throws(() => readSandboxMcp(file('bad.json', '{')), /--mcp-sandbox .*bad\.json: /);
  assert.throws(() => readSandboxMcp(file('shape.json', { servers: {} })), /expected \{"mcpServers"/);
  assert.throws(() => readSandboxMcp(file('http.json', { mcpServers: { s: { url: 'https://x' } } })), /only stdio servers .* KEEL_MCP_CONFIG/);
});

test('the API schema takes mcpSandbox and refuses unknown fields', () => {
  const base = { task: 't', model: { provider: 'scripted', model: 'm' } };
  assert.equal(SessionSpec.safeParse({ ...base, mcpSandbox: { git: { command: 'python3', args: ['-m', 'mcp_server_git'] } } }).success, true);
  assert.equal(SessionSpec.safeParse({ ...base, mcpSandbox: { git: { command: 'python3', url: 'x' } } }).success, false);
  assert.equal(SessionSpec.safeParse({ ...base, mcpSandbox: { 'a__b': { command: 'x' } } }).success, false);
});
