import assert from 'node:assert/strict';
import { lookup } from 'node:dns/promises';
import os from 'node:os';
import { test } from 'node:test';
import { findTargetLoop, parseTarget } from '../../lib/target-address.js';

// A target that reaches rainbowd's own proxy (or control API) would send every request back
// into rainbowd: any address of this machine at one of those ports is refused.

const own = { port: 7000, controlPort: 7001 };

test('a target at the proxy or control port on any address of this machine is a loop into rainbowd', async () => {
  const interfaceAddresses = Object.values(os.networkInterfaces())
    .flat()
    .map((entry) => (entry!.family === 'IPv6' ? `[${entry!.address}]` : entry!.address));
  const hosts = ['127.0.0.1', 'localhost', 'LocalHost', 'app.localhost', '[::1]', '127.3.4.5', '0.0.0.0', '[::]', '[::ffff:7f00:1]', ...interfaceAddresses];
  for (const host of hosts) {
    assert.match((await findTargetLoop(`${host}:7000`, own)) ?? 'accepted', new RegExp(`^${host.replace(/[[\].]/g, '\\$&')}:7000 is rainbowd's own proxy \\(port 7000 on this machine`), host);
    assert.match((await findTargetLoop(`${host}:7001`, own)) ?? 'accepted', /is rainbowd's own control API/, host);
  }
});

test("the machine's own host name is a loop when it resolves to one of its addresses, and not when it does not resolve", async () => {
  const hostname = os.hostname();
  const resolved = await lookup(hostname).catch(() => null);
  const verdict = await findTargetLoop(`${hostname}:7000`, own);
  // Where the name does not resolve (some containers), nothing can reach rainbowd by it.
  if (resolved === null) return assert.equal(verdict, null);
  assert.match(verdict ?? 'accepted', new RegExp(`is rainbowd's own proxy \\(port 7000 on this machine, ${hostname} is `));
});

test('other ports, other machines and names that do not resolve are not loops', async () => {
  for (const target of ['127.0.0.1:7002', 'localhost:3000', '203.0.113.5:7000', '[2001:db8::1]:7000', 'no-such-host.invalid:7000', undefined]) {
    assert.equal(await findTargetLoop(target, own), null, String(target));
  }
});

test('a target is host:port or [IPv6]:port with a port from 1 to 65535, read the same by the config and the deploy', () => {
  assert.deepEqual(parseTarget('127.0.0.1:3000'), { host: '127.0.0.1', port: 3000 });
  assert.deepEqual(parseTarget('app.internal:65535'), { host: 'app.internal', port: 65535 });
  assert.deepEqual(parseTarget('[::1]:8080'), { host: '::1', port: 8080 });
  for (const bad of ['127.0.0.1', ':3000', '127.0.0.1:0', '127.0.0.1:65536', 'http://a:1', '::1:8080', 'a b:1']) assert.equal(parseTarget(bad), null, bad);
});
