import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { test } from 'node:test';
import { Router } from '../../lib/router.js';
import type { Service } from '../../lib/service.js';

function service(name: string, hosts: string[]): Service {
  return { name, config: { hosts } } as unknown as Service;
}

function requestFor(host: string | undefined): IncomingMessage {
  return { headers: host === undefined ? {} : { host } } as IncomingMessage;
}

test('exact host beats wildcard beats the catch-all; port and case do not matter', () => {
  const router = new Router([service('web', []), service('api', ['api.example.com']), service('any', ['*.example.com']), service('deep', ['*.eu.example.com'])]);
  const routed = (host?: string) => router.route(requestFor(host))?.name;
  assert.equal(routed('api.example.com'), 'api');
  assert.equal(routed('API.Example.com:8080'), 'api');
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
