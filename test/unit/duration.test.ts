import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatDuration, parseDuration } from '../../lib/duration.js';

test('durations parse from strings with units and from milliseconds', () => {
  assert.equal(parseDuration('30s'), 30_000);
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('2m'), 120_000);
  assert.equal(parseDuration('1h'), 3_600_000);
  assert.equal(parseDuration('1.5s'), 1500);
  assert.equal(parseDuration('250'), 250);
  assert.equal(parseDuration(1000), 1000);
});

test('nonsense is not a duration', () => {
  for (const bad of ['soon', '-1s', '10 parsecs', '', -5, Number.NaN, null, {}]) {
    assert.throws(() => parseDuration(bad), `${String(bad)} should be refused`);
  }
});

test('a duration longer than the longest timer Node.js can set (~24.8 days) is refused, naming the maximum', () => {
  // Node turns a longer delay into 1 ms: a "1000h" drainTimeout would cut every request at once.
  for (const tooLong of ['1000h', '597h', 2 ** 31, `${2 ** 31}ms`]) {
    assert.throws(() => parseDuration(tooLong), /at most 596h31m \(2147483647 ms, about 24\.8 days/, `${tooLong} should be refused`);
  }
  assert.equal(parseDuration('596h'), 596 * 3_600_000);
  assert.equal(parseDuration(2 ** 31 - 1), 2 ** 31 - 1);
});

test('durations format for people', () => {
  assert.equal(formatDuration(420), '420ms');
  assert.equal(formatDuration(1500), '1.5s');
  assert.equal(formatDuration(42_000), '42s');
  assert.equal(formatDuration(125_000), '2m5s');
});
