import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sandboxSpecProblems } from '../../common/sandbox-spec';
import { capOutput, describeCall, toolJsonSchemas, validateToolCall } from '../../common/tools';

test('a valid shell call passes and keeps its arguments', () => {
  const v = validateToolCall('shell', { command: 'ls', timeoutSec: 5 });
  assert.equal(v.ok, true);
  assert.deepEqual(v.ok && v.input, { command: 'ls', timeoutSec: 5 });
});

test('a missing required argument is an InvalidArguments error naming the field', () => {
  const v = validateToolCall('write_file', { path: 'a.txt' });
  assert.equal(v.ok, false);
  assert.equal(!v.ok && v.error, 'InvalidArguments');
  assert.match(!v.ok ? v.message : '', /content/);
});

test('a wrong type and an unexpected field are rejected', () => {
  const wrongType = validateToolCall('shell', { command: 42 });
  assert.equal(!wrongType.ok && wrongType.error, 'InvalidArguments');
  const extra = validateToolCall('read_file', { path: 'x', mode: 'fast' });
  assert.equal(!extra.ok && extra.error, 'InvalidArguments');
  const notObject = validateToolCall('list_files', 'not json');
  assert.equal(!notObject.ok && notObject.error, 'InvalidArguments');
});

test('an unknown tool is an UnknownTool error that lists the real tools', () => {
  const v = validateToolCall('rm_rf', {});
  assert.equal(!v.ok && v.error, 'UnknownTool');
  assert.match(!v.ok ? v.message : '', /shell, read_file, write_file, edit_file, list_files, read_output, sleep/);
  // Inherited object keys are not tools.
  assert.equal(validateToolCall('toString', {}).ok, false);
});

test('every tool has a JSON schema with its required fields', () => {
  const schemas = toolJsonSchemas();
  assert.deepEqual(Object.keys(schemas).sort(), ['edit_file', 'list_files', 'read_file', 'read_output', 'shell', 'sleep', 'write_file']);
  assert.deepEqual((schemas.edit_file.parameters as { required: string[] }).required.sort(), ['new_string', 'old_string', 'path']);
});

test('capOutput leaves short text alone', () => {
  assert.equal(capOutput('hello', 10), 'hello');
});

test('capOutput keeps head and tail and says how much was cut', () => {
  const text = 'a'.repeat(500) + 'b'.repeat(500);
  const out = capOutput(text, 100);
  assert.ok(out.startsWith('a'.repeat(40)));
  assert.ok(out.endsWith('b'.repeat(60)));
  assert.match(out, /900 characters cut; 1000 in total/);
});

test('describeCall shortens long commands to one line', () => {
  assert.equal(describeCall('shell', { command: 'echo   hi\nls' }), 'echo hi ls');
  assert.equal(describeCall('shell', { command: 'x'.repeat(100) }).length, 60);
  assert.equal(describeCall('read_file', { path: 'a/b.py' }), 'a/b.py');
});

test('sandbox specs that would lift a limit are refused', () => {
  assert.deepEqual(sandboxSpecProblems({ memoryMb: 512, cpus: 0.5, pidsLimit: 64 }), []);
  assert.deepEqual(sandboxSpecProblems(undefined), []);
  const problems = sandboxSpecProblems({ memoryMb: 0, cpus: -1, pidsLimit: 0, hostTimeoutSec: 0 });
  assert.equal(problems.length, 4);
  assert.match(problems[0]!, /sandbox\.memoryMb must be a number from 64 to 65536, not 0/);
});
