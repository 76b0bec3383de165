import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { isRecentEnough, parseVersion } from '../../lib/haproxy-binary.js';
import { defaultWorkers } from '../../lib/config.js';
import { DEFAULT_FORWARDED_FIELDS, FORWARDED_FIELDS } from '../../lib/forward-headers.js';
import { activeMap, haproxyConfig, routingSignature } from '../../lib/haproxy-config.js';
import type { RouteTable, ServiceRoute } from '../../lib/route-table.js';
import { findExecutable } from '../helpers/executables.js';

// The HAProxy config generated from a route table: the routing of router.ts as rules in the
// order that gives the same answers, and what HAProxy itself says of the result.

const haproxy = await findExecutable('haproxy');
const PATHS = { adminSocket: '/run/r/admin.sock', activeMap: '/run/r/active.map', fallbackSocket: '/run/r/fallback.sock' };
const LISTEN = { host: '127.0.0.1', port: 7000 };

function route(name: string, change: Partial<ServiceRoute> = {}): ServiceRoute {
  return { name, hosts: [], pathPrefix: null, stripPathPrefix: true, mode: 'running', message: null, maxPauseMs: 30_000, upstream: null, ...change };
}

function table(services: ServiceRoute[], change: Partial<RouteTable> = {}): RouteTable {
  return { services, trustedProxies: [], forwardedFields: DEFAULT_FORWARDED_FIELDS, via: 'rainbowd-0123456789ab', ...change };
}

/** The service each routing rule sets, in order, with its condition. */
function routingRules(config: string): Array<[string, string]> {
  return [...config.matchAll(/set-var\(txn\.service\) str\(([^)]+)\) if (.*)$/gm)].map((match) => [match[1]!, match[2]!]);
}

test('routing rules come in router.ts order: exact hosts, then wildcards by longest suffix, then the catch-all, each by longest path prefix', () => {
  const config = haproxyConfig(
    table([
      route('site'),
      route('site-api', { pathPrefix: '/api' }),
      route('wild', { hosts: ['*.example.com'] }),
      route('deep-wild', { hosts: ['*.eu.example.com'] }),
      route('app', { hosts: ['App.Example.com'] }),
      route('app-admin', { hosts: ['app.example.com'], pathPrefix: '/admin/v2' }),
    ]),
    [],
    LISTEN,
    PATHS,
  );
  assert.deepEqual(
    routingRules(config).map(([service]) => service),
    ['app-admin', 'app', 'deep-wild', 'wild', 'site-api', 'site'],
  );
  const conditions = Object.fromEntries(routingRules(config));
  // `/admin/v2` and `/admin/v2/x`, not `/admin/v2x`; hosts compared in lower case.
  assert.match(conditions['app-admin']!, /\{ var\(txn\.host\) -m str app\.example\.com \} \{ path -m str \/admin\/v2 \} or .* \{ path -m beg \/admin\/v2\/ \}$/);
  assert.match(conditions['deep-wild']!, /\{ var\(txn\.host\) -m end \.eu\.example\.com \}$/);
  assert.equal(conditions.site, '!{ var(txn.service) -m found }');
  assert.match(config, /set-var\(txn\.host\) req\.hdr\(host\),lower,/);
});

test('without host routes, no rule reads the Host header', () => {
  assert.doesNotMatch(haproxyConfig(table([route('default')]), [], LISTEN, PATHS), /txn\.host/);
});

test('a stripped prefix is removed in its service backend only, with the regex characters of the prefix escaped', () => {
  const config = haproxyConfig(table([route('docs', { pathPrefix: '/v1.0' }), route('raw', { pathPrefix: '/raw', stripPathPrefix: false })]), [], LISTEN, PATHS);
  const docs = config.slice(config.indexOf('backend svc_docs'), config.indexOf('backend svc_raw'));
  assert.match(docs, /http-request replace-path \^\/v1\\\\\.0\/\?\(\.\*\)\$ \/\\1/);
  assert.doesNotMatch(config.slice(config.indexOf('backend svc_raw')), /replace-path/);
});

test('the active generation is a ready server with pool options, a draining one is disabled, and the map sends only running services with a generation to HAProxy', () => {
  const services = [
    route('web', { upstream: { key: 7, generation: 7, host: '127.0.0.1', port: 4001 } }),
    route('paused', { mode: 'paused', upstream: { key: 9, generation: 9, host: '127.0.0.1', port: 4003 } }),
    route('starting'),
  ];
  const config = haproxyConfig(
    table(services),
    [
      { key: 6, generation: 6, service: 'web', host: '127.0.0.1', port: 4000, serving: false },
      { key: 7, generation: 7, service: 'web', host: '127.0.0.1', port: 4001, serving: true },
    ],
    LISTEN,
    PATHS,
  );
  assert.match(config, /^ {2}server g6 127\.0\.0\.1:4000 pool-max-conn -1 pool-purge-delay 4s disabled$/m);
  assert.match(config, /^ {2}server g7 127\.0\.0\.1:4001 pool-max-conn -1 pool-purge-delay 4s$/m);
  assert.equal(activeMap(table(services)), 'web svc_web\n');
  assert.match(config, /use_backend %\[var\(txn\.service\),map\(\/run\/r\/active\.map,fallback\)\]/);
  assert.match(config, /server fallback unix@\/run\/r\/fallback\.sock/);
});

test('claims about the client are deleted unless the peer is a trusted proxy, and Via carries the daemon token', () => {
  const allFields = { forwardedFields: FORWARDED_FIELDS };
  const open = haproxyConfig(table([route('web')], allFields), [], LISTEN, PATHS);
  assert.match(open, /http-request del-header \^\(x-forwarded-for\|.*\|x-real-ip\)\$ -m reg$/m);
  // Deleted, so added without asking whether the client sent one.
  assert.match(open, /http-request add-header x-real-ip %\[var\(txn\.client\)\]$/m);
  const trusting = haproxyConfig(table([route('web')], { ...allFields, trustedProxies: ['10.0.0.1', '::1'] }), [], LISTEN, PATHS);
  assert.match(trusting, /acl trusted src 10\.0\.0\.1 ::1/);
  assert.match(trusting, /http-request del-header \^\(.*\|x-real-ip\)\$ -m reg unless trusted$/m);
  assert.match(trusting, /http-request add-header x-real-ip %\[var\(txn\.client\)\] unless \{ req\.hdr\(x-real-ip\) -m found \}$/m);
  assert.match(trusting, /add-header via "%\[req\.ver\] rainbowd-0123456789ab"/);
  assert.match(trusting, /use_backend fallback if \{ req\.hdr\(via\) -m sub rainbowd-0123456789ab \}/);
});

test('only the forwarded fields configured get a rule: by default the three X-Forwarded ones; the address as text in a variable only where two fields name the client', () => {
  const added = (config: string) => [...config.matchAll(/add-header (x-forwarded-\w+|forwarded|x-real-ip) /g)].map((match) => match[1]);
  const byDefault = haproxyConfig(table([route('web')]), [], LISTEN, PATHS);
  assert.deepEqual(added(byDefault), ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host']);
  // Still deleted from the client: an app reading X-Real-IP must never see one the client made up.
  assert.match(byDefault, /del-header \^\(x-forwarded-for\|.*\|forwarded\|x-real-ip\)\$ -m reg$/m);
  assert.match(byDefault, /add-header x-forwarded-for %\[src\]$/m);
  assert.doesNotMatch(byDefault, /txn\.client/);
  const protoOnly = haproxyConfig(table([route('web')], { forwardedFields: ['x-forwarded-proto'] }), [], LISTEN, PATHS);
  assert.deepEqual(added(protoOnly), ['x-forwarded-proto']);
  assert.doesNotMatch(protoOnly, /txn\.client/);
});

test('a reload is needed for a change of routes, not for a switch or a pause', () => {
  const before = table([route('web', { upstream: { key: 1, generation: 1, host: '127.0.0.1', port: 4000 } })]);
  const switched = table([route('web', { upstream: { key: 2, generation: 2, host: '127.0.0.1', port: 4001 }, mode: 'paused' })]);
  const rerouted = table([route('web', { hosts: ['web.test'] })]);
  assert.equal(routingSignature(switched), routingSignature(before));
  assert.notEqual(routingSignature(rerouted), routingSignature(before));
});

test('HAProxy accepts the generated config', { skip: haproxy === undefined && 'haproxy is not installed' }, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'rainbowd-haproxy-config-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const paths = { adminSocket: path.join(dir, 'admin.sock'), activeMap: path.join(dir, 'active.map'), fallbackSocket: path.join(dir, 'fallback.sock') };
  const services = [route('web', { hosts: ['web.test', '*.web.test'], pathPrefix: '/v1.0', upstream: { key: 3, generation: 3, host: '127.0.0.1', port: 4000 } }), route('default')];
  writeFileSync(paths.activeMap, activeMap(table(services)));
  writeFileSync(path.join(dir, 'haproxy.cfg'), haproxyConfig(table(services, { trustedProxies: ['10.0.0.1'] }), [{ key: 3, generation: 3, service: 'web', host: '127.0.0.1', port: 4000, serving: true }], LISTEN, paths));
  const output = await new Promise<string>((resolve, reject) => {
    execFile(haproxy!, ['-c', '-f', path.join(dir, 'haproxy.cfg')], (error, stdout, stderr) => (error ? reject(new Error(`${stdout}${stderr}`)) : resolve(`${stdout}${stderr}`)));
  });
  assert.match(output, /Configuration file is valid/);
  assert.doesNotMatch(output, /WARNING|ALERT/);
});

test('the version check reads `haproxy -v` and takes 2.6 and later', () => {
  assert.equal(parseVersion('HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/\nStatus: long-term'), '2.6.12-1+deb12u4');
  assert.equal(parseVersion('HA-Proxy version 1.8.19 2019/02/11'), '1.8.19');
  assert.equal(parseVersion('nginx version: nginx/1.22.1'), null);
  assert.equal(isRecentEnough('2.6.12-1+deb12u4'), true);
  assert.equal(isRecentEnough('3.0.5'), true);
  assert.equal(isRecentEnough('2.10.0'), true);
  assert.equal(isRecentEnough('2.4.22'), false);
  assert.equal(isRecentEnough('1.9.0'), false);
});

test('HAProxy runs as many threads as rainbowd would run proxy workers, at least one, not one per core', () => {
  assert.match(haproxyConfig(table([route('default')]), [], LISTEN, PATHS), new RegExp(`^  nbthread ${Math.max(1, defaultWorkers())}$`, 'm'));
});

test('a lone catch-all service is routed by its name in the map, without a rule to evaluate on every request', () => {
  const config = haproxyConfig(table([route('default')]), [], LISTEN, PATHS);
  assert.doesNotMatch(config, /set-var\(txn\.service\)/);
  assert.match(config, /^ {2}use_backend %\[str\(default\),map\(\/run\/r\/active\.map,fallback\)\]$/m);
  // A second service, or a prefix, brings the rules back (a change of routes reloads HAProxy with this config).
  assert.match(haproxyConfig(table([route('default', { pathPrefix: '/api' })]), [], LISTEN, PATHS), /use_backend %\[var\(txn\.service\),map/);
});

test("a service's backend turns the client's address into text once a request, not once for each field that names it", () => {
  const backend = haproxyConfig(table([route('web')]), [], LISTEN, PATHS).split('backend svc_web')[1]!;
  assert.equal([...backend.matchAll(/\bsrc\b/g)].length, 1);
  assert.doesNotMatch(backend, /option forwardfor/);
});
