import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { test } from 'node:test';
import { Router, stripPrefix, underPrefix } from '../../lib/router.js';

interface Named {
  name: string;
  route: { hosts: string[]; pathPrefix: string | null };
}

function service(name: string, hosts: string[], pathPrefix: string | null = null): Named {
  return { name, route: { hosts, pathPrefix } };
}

function requestFor(host: string | undefined, url = '/'): IncomingMessage {
  return { url, headers: host === undefined ? {} : { host } } as IncomingMessage;
}

test('exact host beats wildcard beats the catch-all; port, case and a trailing dot do not matter', () => {
  const router = new Router([service('web', []), service('api', ['api.example.com']), service('any', ['*.example.com']), service('deep', ['*.eu.example.com'])]);
  const routed = (host?: string) => router.route(requestFor(host))?.name;
  assert.equal(routed('api.example.com'), 'api');
  assert.equal(routed('API.Example.com:8080'), 'api');
  assert.equal(routed('api.example.com.'), 'api', 'a fully qualified name, with its trailing dot');
  assert.equal(routed('api.example.com.:8080'), 'api');
  assert.equal(routed('www.example.com.'), 'any');
  assert.equal(routed('www.example.com'), 'any');
  assert.equal(routed('shop.eu.example.com'), 'deep');
  assert.equal(routed('example.com'), 'web');
  assert.equal(routed('other.org'), 'web');
  assert.equal(routed(undefined), 'web');
});

test('without a catch-all service an unknown host matches nothing', () => {
  const router = new Router([service('api', ['api.example.com'])]);
  assert.equal(router.route(requestFor('other.org')), null);
});

test('within a host the longest path prefix wins, and a prefix matches whole segments only', () => {
  const router = new Router([
    service('site', ['example.com']),
    service('api', ['example.com'], '/api'),
    service('api-v2', ['example.com'], '/api/v2'),
    service('catch-all-docs', [], '/docs'),
  ]);
  const routed = (url: string, host = 'example.com') => router.route(requestFor(host, url))?.name ?? null;
  assert.equal(routed('/api'), 'api');
  assert.equal(routed('/api/users?x=1'), 'api');
  assert.equal(routed('/api?x=1'), 'api');
  assert.equal(routed('/api/v2/users'), 'api-v2');
  assert.equal(routed('/apis'), 'site');
  assert.equal(routed('/'), 'site');
  assert.equal(routed('/docs/intro', 'other.org'), 'catch-all-docs');
  assert.equal(routed('/', 'other.org'), null, 'no catch-all for / here');
});

test('a host whose prefixes do not match falls through to the wildcard and the catch-all', () => {
  const router = new Router([service('api', ['example.com'], '/api'), service('web', [])]);
  assert.equal(router.route(requestFor('example.com', '/shop'))?.name, 'web');
});

test('prefix helpers: segments and stripping', () => {
  assert.equal(underPrefix('/api', '/api'), true);
  assert.equal(underPrefix('/api-docs', '/api'), false);
  assert.equal(stripPrefix('/api/users?x', '/api'), '/users?x');
  assert.equal(stripPrefix('/api', '/api'), '/');
  assert.equal(stripPrefix('/api?x=1', '/api'), '/?x=1');
});
