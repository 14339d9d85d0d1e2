/** KEEL_LOG_LEVEL: empty means unset, case does not matter, a wrong value says which ones exist. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { logLevel } from '../../workers/logging';

test('an empty or missing KEEL_LOG_LEVEL falls back; a level is taken in any case', () => {
  assert.equal(logLevel(undefined, 'ERROR'), 'ERROR');
  assert.equal(logLevel('', 'ERROR'), 'ERROR');
  assert.equal(logLevel('  ', 'INFO'), 'INFO');
  assert.equal(logLevel('debug', 'ERROR'), 'DEBUG');
  assert.equal(logLevel(' Warn ', 'ERROR'), 'WARN');
});

test('a value that is not a level is refused with the list', () => {
  assert.throws(() => logLevel('verbose', 'ERROR'), /KEEL_LOG_LEVEL=verbose is not a level\. Fix: one of TRACE, DEBUG, INFO, WARN, ERROR/);
});
