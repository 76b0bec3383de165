import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import getPort from 'get-port';
import { cli, describeCli } from '../helpers/cli.js';
import { startDaemon, type Daemon } from '../helpers/daemon.js';
import { testEachEngine, type Engine } from '../helpers/engines.js';
import { header, request, type Response } from '../helpers/http.js';
import { daemonBin } from '../helpers/paths.js';
import { uniqueMarker } from '../helpers/process.js';
import { startTarget, type Target } from '../helpers/target.js';
import { waitFor } from '../helpers/wait.js';

// Host and path -> service, through the real proxy: exact host > wildcard > catch-all,
// longest path prefix within a host, Host with a port or in upper case, prefixes stripped
// unless told not to, and a 404 that names nothing internal when nothing matches.

interface Routed {
  daemon: Daemon;
  targets: Record<string, Target>;
}

const services = {
  api: { host: 'api.example.test' },
  docs: { host: 'api.example.test', pathPrefix: '/docs' },
  docsv2: { host: 'api.example.test', pathPrefix: '/docs/v2/' },
  raw: { host: ['api.example.test', 'raw.example.test'], pathPrefix: '/raw', stripPathPrefix: false },
  wild: { host: '*.example.test' },
  eu: { host: '*.eu.example.test' },
} as const;

async function startRouted(t: TestContext, engine: Engine): Promise<Routed> {
  const marker = uniqueMarker('routing');
  const targets: Record<string, Target> = {};
  for (const name of Object.keys(services)) targets[name] = await startTarget(t, { service: name, label: name, marker });
  const config = Object.fromEntries(Object.entries(services).map(([name, routes]) => [name, { ...routes, target: targets[name]!.address, healthCheckPath: '/health' }]));
  const daemon = await startDaemon(t, { config: { services: config }, engine, waitUntilActive: false });
  for (const name of Object.keys(services)) await daemon.waitForActive({ service: name });
  return { daemon, targets };
}

function get(daemon: Daemon, hostHeader: string, path = '/'): Promise<Response> {
  return request(daemon.proxyPort, path, { headers: { host: hostHeader } });
}

async function assertRoute(daemon: Daemon, hostHeader: string, path: string, service: string, forwardedPath: string): Promise<void> {
  const response = await get(daemon, hostHeader, path);
  const where = `Host: ${hostHeader}, GET ${path}`;
  assert.equal(response.status, 200, `${where} answered ${response.status}: ${response.body}`);
  assert.equal(header(response, 'x-service'), service, `${where} went to the wrong service`);
  assert.equal(header(response, 'x-path'), forwardedPath, `${where} reached ${service} with the wrong path`);
}

testEachEngine('an exact host beats a wildcard, the longer wildcard beats the shorter, and Host matches with a port or in upper case', { timeout: 60_000 }, async (t, engine) => {
  const { daemon } = await startRouted(t, engine);
  await assertRoute(daemon, 'api.example.test', '/users?page=2', 'api', '/users?page=2');
  await assertRoute(daemon, 'API.Example.TEST', '/', 'api', '/');
  await assertRoute(daemon, 'api.example.test:8080', '/', 'api', '/');
  await assertRoute(daemon, 'Api.Example.Test:443', '/x', 'api', '/x');
  await assertRoute(daemon, 'shop.example.test', '/cart', 'wild', '/cart');
  await assertRoute(daemon, 'SHOP.EXAMPLE.TEST:80', '/', 'wild', '/');
  await assertRoute(daemon, 'a.b.example.test', '/', 'wild', '/');
  await assertRoute(daemon, 'paris.eu.example.test', '/', 'eu', '/');
  await assertRoute(daemon, 'Paris.EU.example.test:8443', '/', 'eu', '/');
  // The exact host's path services do not take the wildcard's hosts.
  await assertRoute(daemon, 'shop.example.test', '/docs/intro', 'wild', '/docs/intro');
});

testEachEngine('the longest path prefix wins within a host; prefixes are stripped unless stripPathPrefix is false', { timeout: 60_000 }, async (t, engine) => {
  const { daemon } = await startRouted(t, engine);
  await assertRoute(daemon, 'api.example.test', '/docs/intro', 'docs', '/intro');
  await assertRoute(daemon, 'api.example.test', '/docs', 'docs', '/');
  await assertRoute(daemon, 'api.example.test', '/docs/', 'docs', '/');
  await assertRoute(daemon, 'api.example.test', '/docs?q=1', 'docs', '/?q=1');
  await assertRoute(daemon, 'api.example.test', '/docs/v2/intro?lang=en', 'docsv2', '/intro?lang=en');
  await assertRoute(daemon, 'api.example.test', '/docs/v2', 'docsv2', '/');
  await assertRoute(daemon, 'api.example.test', '/docs/v20', 'docs', '/v20');
  // Not under the prefix: a prefix matches whole path segments only.
  await assertRoute(daemon, 'api.example.test', '/docsearch', 'api', '/docsearch');
  await assertRoute(daemon, 'api.example.test', '/raw/file.txt', 'raw', '/raw/file.txt');
  await assertRoute(daemon, 'api.example.test', '/raw', 'raw', '/raw');
  await assertRoute(daemon, 'raw.example.test', '/raw/x', 'raw', '/raw/x');
  // raw.example.test has only the /raw service; other paths fall through to the wildcard.
  await assertRoute(daemon, 'raw.example.test', '/elsewhere', 'wild', '/elsewhere');
});

testEachEngine('a path is routed and forwarded normalized (dot segments, percent-encoded letters), and a Host with a trailing dot reaches its service', { timeout: 60_000 }, async (t, engine) => {
  const { daemon } = await startRouted(t, engine);
  await assertRoute(daemon, 'api.example.test', '/x/../docs/intro', 'docs', '/intro');
  await assertRoute(daemon, 'api.example.test', '/%64ocs/intro?q=%2e%2e', 'docs', '/intro?q=%2e%2e');
  await assertRoute(daemon, 'api.example.test', '/docs/v2/./../../raw/a', 'raw', '/raw/a');
  // Other percent-encodings and repeated slashes are kept as sent.
  await assertRoute(daemon, 'api.example.test', '/docs/a%2Fb%20c', 'docs', '/a%2Fb%20c');
  await assertRoute(daemon, 'api.example.test', '/docs//x', 'docs', '//x');
  await assertRoute(daemon, 'api.example.test.', '/', 'api', '/');
  await assertRoute(daemon, 'shop.example.test.:8080', '/', 'wild', '/');
  const above = await get(daemon, 'api.example.test', '/docs/../../etc/passwd');
  assert.equal(above.status, 400, 'a path that climbs above the root is refused, as nginx does');
});

testEachEngine('a request that matches no service gets a 404 page that names nothing internal', { timeout: 60_000 }, async (t, engine) => {
  const { daemon, targets } = await startRouted(t, engine);
  const internal = [
    ...Object.keys(services),
    ...Object.values(targets).map((target) => String(target.port)),
    String(daemon.proxyPort),
    String(daemon.controlPort),
    '127.0.0.1',
    'localhost',
    daemon.dir,
    'example.test',
  ];
  const byAddress = `127.0.0.1:${daemon.proxyPort}`;
  for (const [hostHeader, path] of [['unknown.test', '/'], ['example.test', '/'], ['evil.test', '/docs/intro'], [byAddress, '/']] as const) {
    const response = await get(daemon, hostHeader, path);
    assert.equal(response.status, 404, `Host "${hostHeader}" answered ${response.status}: ${response.body}`);
    assert.equal(header(response, 'x-service'), undefined);
    const shown = `${response.body}\n${Object.entries(response.headers).map(([name, value]) => `${name}: ${String(value)}`).join('\n')}`;
    for (const word of internal) assert.ok(!shown.toLowerCase().includes(word.toLowerCase()), `the 404 for Host "${hostHeader}" shows "${word}":\n${shown}`);
  }
});

testEachEngine('a deployed service may take a new host or path; a host or catch-all owned by another service is refused and changes nothing', { timeout: 90_000 }, async (t, engine) => {
  const { daemon } = await startRouted(t, engine);
  const marker = uniqueMarker('routing-deploy');
  const shop = await startTarget(t, { service: 'shop', label: 'shop', marker });
  const blog = await startTarget(t, { service: 'blog', label: 'blog', marker });
  const fallback = await startTarget(t, { service: 'fallback', label: 'fallback', marker });
  const other = await startTarget(t, { service: 'other', label: 'other', marker });
  const deploy = (name: string, target: Target, args: string[]) => cli(daemon, ['deploy', name, '--target', target.address, '--health-check-path', '/health', ...args]);

  // An exact host under a wildcard is a different host: allowed, and it wins.
  const shopDeployed = await deploy('shop', shop, ['--host', 'shop.example.test', '--path-prefix', '/store']);
  assert.equal(shopDeployed.code, 0, describeCli(shopDeployed));
  await assertRoute(daemon, 'shop.example.test', '/store/cart', 'shop', '/cart');
  await assertRoute(daemon, 'shop.example.test', '/other', 'wild', '/other');
  // The same host as api with another path prefix: allowed; without strip the path is kept.
  const blogDeployed = await deploy('blog', blog, ['--host', 'api.example.test', '--path-prefix', '/blog', '--no-strip-path-prefix']);
  assert.equal(blogDeployed.code, 0, describeCli(blogDeployed));
  await assertRoute(daemon, 'api.example.test', '/blog/post-1', 'blog', '/blog/post-1');
  // No --host: the catch-all, which nobody had.
  const fallbackDeployed = await deploy('fallback', fallback, []);
  assert.equal(fallbackDeployed.code, 0, describeCli(fallbackDeployed));
  await assertRoute(daemon, 'unknown.test', '/x', 'fallback', '/x');
  await assertRoute(daemon, 'api.example.test', '/', 'api', '/');

  const stateFile = join(daemon.dir, 'rainbow.state.json');
  const stateBefore = readFileSync(stateFile, 'utf8');
  const conflicts: Array<[string, string[]]> = [
    ['api.example.test owned by api', ['--host', 'api.example.test']],
    ['API.EXAMPLE.TEST owned by api', ['--host', 'API.EXAMPLE.TEST']],
    ['the wildcard owned by wild', ['--host', 'new.test', '--host', '*.example.test']],
    ['api.example.test/docs owned by docs', ['--host', 'api.example.test', '--path-prefix', '/docs']],
    ['the catch-all owned by fallback', []],
  ];
  for (const [what, args] of conflicts) {
    const refused = await deploy('other', other, args);
    assert.equal(refused.code, 1, `${what}: ${describeCli(refused)}`);
    assert.match(refused.stderr, /host is used by another service/, `${what}: ${describeCli(refused)}`);
  }
  // Taking over another deployed service's host under its own name is refused too.
  const stolen = await deploy('blog', other, ['--host', 'shop.example.test', '--path-prefix', '/store']);
  assert.equal(stolen.code, 1, describeCli(stolen));
  assert.match(stolen.stderr, /host is used by another service/);

  const names = (await daemon.status()).services.map((service) => service.name);
  assert.ok(!names.includes('other'), `a refused deploy created the service: ${names.join(',')}`);
  assert.equal(readFileSync(stateFile, 'utf8'), stateBefore, 'a refused deploy changed the state file');
  await assertRoute(daemon, 'api.example.test', '/', 'api', '/');
  await assertRoute(daemon, 'new.test', '/', 'fallback', '/');
  await assertRoute(daemon, 'api.example.test', '/blog/x', 'blog', '/blog/x');
});

test('of two deploys under different names that claim the same host at the same time, one is refused', { timeout: 60_000 }, async (t) => {
  const daemon = await startDaemon(t, { config: { services: {} }, waitUntilActive: false });
  const marker = uniqueMarker('routing-race');
  const ports = [await getPort({ host: '127.0.0.1' }), await getPort({ host: '127.0.0.1' })];
  // Both are health-checked (their targets are not up yet) when the other one is checked for clashes.
  const answered = new Set<string>();
  const deploys = ['first', 'second'].map((name, i) =>
    cli(daemon, ['deploy', name, '--target', `127.0.0.1:${ports[i]}`, '--host', 'race.test', '--health-check-path', '/health', '--deploy-timeout', '10s']).finally(() => answered.add(name)),
  );
  // The targets come up only once each deploy has been refused or is being health-checked.
  await waitFor(() => ['first', 'second'].every((name) => answered.has(name) || daemon.output.some((line) => new RegExp(` ${name}#\\d+ starting `).test(line))), {
    timeout: 10_000,
    what: 'each deploy to be refused or health-checked',
  });
  for (const [i, name] of ['first', 'second'].entries()) await startTarget(t, { service: name, label: name, marker, port: ports[i] });
  const results = await Promise.all(deploys);
  assert.deepEqual(results.map((result) => result.code).sort(), [0, 1], 'both deploys of race.test were accepted');
  assert.match(results.find((result) => result.code === 1)?.stderr ?? '', /host is used by another service/);
  const owners = (await daemon.status()).services.filter((service) => service.hosts?.includes('race.test')).map((service) => service.name);
  assert.equal(owners.length, 1, `race.test is owned by ${owners.join(' and ')}`);
});

test('a config in which two services claim the same host (in any case) or the catch-all is refused at start with the reason', { timeout: 30_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rainbowd-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const port = await getPort({ host: '127.0.0.1' });
  const controlPort = await getPort({ host: '127.0.0.1', exclude: [port] });
  const configs: Array<[string, Record<string, unknown>, RegExp]> = [
    ['the same host', { services: { one: { target: '127.0.0.1:1', host: 'a.test' }, two: { target: '127.0.0.1:2', host: ['b.test', 'A.TEST'] } } }, /"services\.two".*host is used by another service.*a\.test.*"one"/],
    ['the same host and path', { services: { one: { target: '127.0.0.1:1', host: 'a.test', pathPrefix: '/x' }, two: { target: '127.0.0.1:2', host: 'a.test', pathPrefix: '/x/' } } }, /host is used by another service/],
    ['the catch-all', { target: '127.0.0.1:3', services: { two: { target: '127.0.0.1:2' } } }, /host is used by another service.*catch-all/],
  ];
  for (const [what, config, reason] of configs) {
    const file = join(dir, `${what.replaceAll(' ', '-')}.json`);
    writeFileSync(file, JSON.stringify({ ...config, port, controlPort }));
    const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      execFile(process.execPath, [daemonBin, 'run', '--config', file], { cwd: dir, timeout: 15_000 }, (error, _stdout, stderr) => {
        resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : null, stderr });
      });
    });
    assert.equal(result.code, 2, `${what}: exit ${result.code}, stderr ${result.stderr}`);
    assert.match(result.stderr, reason, `${what}: ${result.stderr}`);
    assert.ok(result.stderr.includes(file), `${what}: the error does not name the file: ${result.stderr}`);
    assert.equal(existsSync(join(dir, 'rainbow.state.json')), false);
  }
});
