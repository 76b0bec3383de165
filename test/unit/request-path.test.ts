import assert from 'node:assert/strict';
import { test } from 'node:test';
import { normalizeTarget } from '../../lib/request-path.js';

test('paths are routed normalized: unreserved characters decoded, dot segments removed, the query left alone', () => {
  const cases: Array<[string, string | null]> = [
    ['/', '/'],
    ['/api/users?x=1', '/api/users?x=1'],
    ['/x/../api', '/api'],
    ['/%61pi', '/api'],
    ['/%2e%2e/api', null],
    ['/x/%2E%2E/api/', '/api/'],
    ['/a/./b', '/a/b'],
    ['/a/b/..', '/a/'],
    ['/a/.', '/a/'],
    ['/.well-known/x', '/.well-known/x'],
    ['/a%2Fb', '/a%2Fb'], // a reserved character keeps its meaning: not a segment separator
    ['/a%20b', '/a%20b'],
    ['/a/../b?next=/../x', '/b?next=/../x'],
    ['//double//slash', '//double//slash'],
    ['/..', null],
    ['/a/../../b', null],
    ['*', '*'],
    ['http://example.com/../x', 'http://example.com/../x'],
  ];
  for (const [target, expected] of cases) assert.equal(normalizeTarget(target), expected, target);
});
