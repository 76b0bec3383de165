import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseRunArguments } from '../../lib/cli/run-options.js';
import { loadConfig } from '../../lib/config.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const cli = path.join(root, 'bin/rainbowd.js');

async function configFile(content: string, name = 'rainbow.conf.json'): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rainbowd-config-'));
  const file = path.join(dir, name);
  await writeFile(file, content);
  return file;
}

test('a rainbowd.js config works unchanged: proxy on 7000, control on 7001', async () => {
  const file = await configFile('{"run": "gunicorn myapp:app --bind 127.0.0.1:$1 --pid $2 --", "healthCheckPath": "/"}');
  const config = await loadConfig(file);
  assert.equal(config.port, 7000);
  assert.equal(config.controlPort, 7001);
  assert.equal(config.host, '127.0.0.1');
  const [service] = config.services;
  assert.equal(service!.run, 'gunicorn myapp:app --bind 127.0.0.1:$1 --pid $2 --');
  assert.equal(service!.healthCheck.path, '/');
  assert.equal(service!.cwd, path.dirname(file));
  assert.deepEqual([service!.deployTimeoutMs, service!.drainTimeoutMs, service!.stopTimeoutMs, service!.maxGenerations], [60_000, 30_000, 10_000, 10]);
});

test('durations accept "30s", "500ms", "2m" and numbers of milliseconds', async () => {
  const file = await configFile('{"run": "x", "deployTimeout": "2m", "drainTimeout": "500ms", "stopTimeout": 1500, "healthCheck": {"interval": "1.5s"}}');
  const [service] = (await loadConfig(file)).services;
  assert.deepEqual([service!.deployTimeoutMs, service!.drainTimeoutMs, service!.stopTimeoutMs, service!.healthCheck.intervalMs], [120_000, 500, 1500, 1500]);
});

test('forwardedFields: the three X-Forwarded ones by default; names in any case', async () => {
  assert.deepEqual((await loadConfig(await configFile('{"run": "x"}'))).forwardedFields, ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host']);
  assert.deepEqual((await loadConfig(await configFile('{"run": "x", "forwardedFields": ["X-Forwarded-For", "X-Real-IP"]}'))).forwardedFields, ['x-forwarded-for', 'x-real-ip']);
  assert.deepEqual((await loadConfig(await configFile('{"run": "x", "forwardedFields": []}'))).forwardedFields, []);
});

test('releaseIdleMemoryAfter: five minutes by default; 0 turns it off', async () => {
  assert.equal((await loadConfig(await configFile('{"run": "x"}'))).releaseIdleMemoryAfterMs, 300_000);
  assert.equal((await loadConfig(await configFile('{"run": "x", "releaseIdleMemoryAfter": "90s"}'))).releaseIdleMemoryAfterMs, 90_000);
  assert.equal((await loadConfig(await configFile('{"run": "x", "releaseIdleMemoryAfter": 0}'))).releaseIdleMemoryAfterMs, 0);
});

test('controlPort defaults to the proxy port + 1, and flags win over the file', async () => {
  const file = await configFile('{"run": "x", "port": 8000}');
  assert.equal((await loadConfig(file)).controlPort, 8001);
  const overridden = await loadConfig(file, { port: 9000, controlPort: 9100 });
  assert.deepEqual([overridden.port, overridden.controlPort], [9000, 9100]);
});

// A reload loads the same file again: the edited one, though import() keeps modules it loaded.
for (const [name, exported] of [['rainbow.config.mjs', 'export default'], ['rainbow.config.cjs', 'module.exports ='], ['rainbow.config.js', 'export default']] as const) {
  test(`a ${name} edited after it was loaded is read again as edited, and an edit undone goes back`, async () => {
    const file = await configFile(`${exported} { run: "release one" };\n`, name);
    if (name === 'rainbow.config.js') await writeFile(path.join(path.dirname(file), 'package.json'), '{"type": "module"}');
    const runOf = async () => (await loadConfig(file)).services[0]!.run;
    assert.equal(await runOf(), 'release one');
    await writeFile(file, `${exported} { run: "release two" };\n`);
    assert.equal(await runOf(), 'release two');
    await writeFile(file, `${exported} { run: "release one" };\n`);
    assert.equal(await runOf(), 'release one');
  });
}

// How the file is given: by --config (the default), or found in the working directory.
interface HowGiven {
  name?: string;
  search?: boolean;
  args?: string[];
}

const badConfigs: Array<[string, string, RegExp, HowGiven?]> = [
  ['bad JSON', '{"run": "x",}', /not valid JSON at line 1, column 13/],
  ['an unknown key', '{"run": "x", "helthCheckPath": "/"}', /unknown key "helthCheckPath"/],
  ['a wrong type', '{"run": 42}', /"run" must be a non-empty string, got number 42/],
  ['both run and target', '{"run": "x", "target": "127.0.0.1:3000"}', /exactly one of "run".*"target".*found both/],
  ['neither run nor target', '{"port": 7000}', /exactly one of "run".*"target".*found neither/],
  ['a bad duration', '{"run": "x", "drainTimeout": "soon"}', /"drainTimeout" must be a duration like "30s".*got "soon"/],
  ['a duration Node cannot time', '{"run": "x", "drainTimeout": "1000h"}', /"drainTimeout" must be a duration of at most 596h31m \(.*\), got "1000h"/],
  ['a port out of range', '{"run": "x", "port": 70000}', /"port" must be a port number from 1 to 65535, got number 70000/],
  ['a bad target', '{"target": "localhost"}', /"target" must be a "host:port" address/],
  ['a target that is its own proxy', '{"target": "127.0.0.1:7000"}', /"target": 127\.0\.0\.1:7000 is rainbowd's own proxy \(port 7000 on this machine\): every request would come back into rainbowd in a loop/],
  ['a target that is its own control API', '{"port": 7100, "services": {"l": {"target": "localhost:7101", "host": "l.test"}}}', /"services\.l\.target": localhost:7101 is rainbowd's own control API/],
  ['a health path without a slash', '{"run": "x", "healthCheckPath": "health"}', /"healthCheckPath" must be a path starting with "\/"/],
  ['a control API open to the network without a token', '{"run": "x", "controlHost": "0.0.0.0"}', /"controlHost" must be a loopback address \(127\.0\.0\.1, ::1 or localhost\) unless "controlToken" is set: without a token the control API has no authentication, got "0\.0\.0\.0"/],
  ['a control token too short to resist guessing', '{"run": "x", "controlToken": "secret"}', /"controlToken" must be a string of at least 16 printable ASCII characters without spaces, e\.g\. from `openssl rand -hex 32`$/m],
  ['a bad service host', '{"services": {"api": {"target": "127.0.0.1:1", "host": "api example"}}}', /"services.api.host" must be host names like "app.example.com"/],
  ['an unknown service key', '{"services": {"api": {"target": "127.0.0.1:1", "hots": "x"}}}', /unknown key "services.api.hots"/],
  ['too many proxy workers', '{"run": "x", "workers": 100}', /"workers" must be a whole number from 0 to 64, got number 100/],
  ['a bad service name', '{"services": {"a b": {"target": "127.0.0.1:1"}}}', /"services.a b" must be named with letters, digits/],
  ['a number in quotes', '{"run": "x", "port": "7000"}', /"port" must be a port number from 1 to 65535, written without quotes: 7000, not "7000"$/],
  ['a misspelt key', '{"run": "x", "healthCheckPth": "/"}', /unknown key "healthCheckPth"; did you mean "healthCheckPath"\?/],
  ['a misspelt service key', '{"services": {"api": {"target": "127.0.0.1:1", "pathPrefx": "/a"}}}', /unknown key "services.api.pathPrefx"; did you mean "services.api.pathPrefix"\?/],
  ['a healthCheck.path without a slash', '{"run": "x", "healthCheck": {"path": "health"}}', /"healthCheck.path" must be a path starting with "\/"/],
  ['a cwd that does not exist', '{"run": "x", "cwd": "no-such-dir"}', /"cwd" must be an existing directory \(the app is started there\), but \/.*\/no-such-dir is not one$/],
  ['a port out of range that a flag overrides', '{"run": "x", "port": 70000}', /"port" must be a port number from 1 to 65535, got number 70000/, { args: ['--http-port', '7123'] }],
  ['a forwarded field rainbowd cannot set', '{"run": "x", "forwardedFields": ["x-forwarded-for", "x-forwarded-port"]}', /"forwardedFields" must be a list of "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded", "x-real-ip", got "x-forwarded-port"$/],
  ['a releaseIdleMemoryAfter that is not a duration', '{"run": "x", "releaseIdleMemoryAfter": "never"}', /"releaseIdleMemoryAfter" must be a duration like "30s", "500ms", "2m" or a number of milliseconds, got "never"$/],
  ['a releaseIdleMemoryAfter too short to tell idle', '{"run": "x", "releaseIdleMemoryAfter": "10ms"}', /"releaseIdleMemoryAfter" must be 0 \(never\) or a duration of at least 1s, got "10ms"$/],
  ['null in it', 'null', /the config is null; it must be an object/],
  ['null in it, found by searching', 'null', /the config is null; it must be an object/, { search: true }],
  ['nothing in it, found by searching', '', /the file is empty; it needs at least \{"run": "\.\.\."\}/, { search: true }],
  ['a YAML error', 'run: "x\n', /^rainbowd: \/.*\/\.rainbowrc: unexpected end of the stream within a double quoted scalar \(2:1\)$/, { name: '.rainbowrc', search: true }],
  ['a syntax error in rainbow.config.cjs', 'module.exports = {run: "x",,};\n', /rainbow\.config\.cjs: line 1: SyntaxError: Unexpected token ','$/, { name: 'rainbow.config.cjs', search: true }],
  ['a syntax error in rainbow.config.mjs', 'export default {run: "x",,};\n', /rainbow\.config\.mjs: SyntaxError: Unexpected token ','$/, { name: 'rainbow.config.mjs', search: true }],
  ['an error thrown by rainbow.config.mjs', 'const port = 7000;\nthrow new Error("no config today");\n', /rainbow\.config\.mjs: line 2: no config today$/, { name: 'rainbow.config.mjs', search: true }],
];

for (const [what, content, expected, how = {}] of badConfigs) {
  test(`a config with ${what} is refused with one line naming the file and the key, exit 2`, async () => {
    const file = await configFile(content, how.name);
    const args = ['run', ...(how.search ? [] : ['--config', file]), ...(how.args ?? [])];
    const result = await promisify(execFile)(process.execPath, [cli, ...args], { cwd: path.dirname(file), timeout: 20_000 }).then(
      () => assert.fail('rainbowd started with a bad config'),
      (error: { code: number; stderr: string; stdout: string }) => error,
    );
    assert.equal(result.code, 2);
    const lines = result.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, `expected one line, got:\n${result.stderr}`);
    assert.ok(lines[0]!.startsWith(`rainbowd: ${file}: `), lines[0]);
    assert.match(lines[0]!, expected);
    assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace');
  });
}

test('an explicit --config that does not exist is one line and exit 2', async () => {
  const missing = path.join(os.tmpdir(), 'rainbowd-no-such-dir', 'rainbow.conf.json');
  const result = await promisify(execFile)(process.execPath, [cli, '--config', missing]).catch((error: { code: number; stderr: string }) => error);
  assert.equal((result as { code: number }).code, 2);
  assert.equal((result as { stderr: string }).stderr, `rainbowd: ${missing}: no such file\n`);
});

test('workers: none on 1-2 cores, else one per core up to 4 by default; the file, then RAINBOWD_WORKERS and --workers win', async () => {
  const file = await configFile('{"run": "x", "workers": 3}');
  const cores = os.availableParallelism();
  assert.equal((await loadConfig(await configFile('{"run": "x"}'))).workers, cores <= 2 ? 0 : Math.min(cores, 4));
  assert.equal((await loadConfig(file)).workers, 3);
  assert.equal((await loadConfig(file, parseRunArguments([], { RAINBOWD_WORKERS: '0' }).overrides)).workers, 0);
  assert.equal((await loadConfig(file, parseRunArguments(['--workers', '1'], { RAINBOWD_WORKERS: '0' }).overrides)).workers, 1);
});

test('with a control token the control API may listen beyond loopback; the token comes from the file or RAINBOWD_CONTROL_TOKEN', async () => {
  const token = 'a'.repeat(32);
  const file = await configFile(JSON.stringify({ run: 'x', controlHost: '0.0.0.0', controlToken: token }));
  const config = await loadConfig(file);
  assert.deepEqual([config.controlHost, config.controlToken], ['0.0.0.0', token]);
  const fromEnv = parseRunArguments(['--control-host', '10.0.0.1'], { RAINBOWD_CONTROL_TOKEN: 'b'.repeat(32) }).overrides;
  assert.equal((await loadConfig(await configFile('{"run": "x"}'), fromEnv)).controlToken, 'b'.repeat(32));
  assert.throws(() => parseRunArguments([], { RAINBOWD_CONTROL_TOKEN: 'short' }), (error: Error) => !error.message.includes('short') && /RAINBOWD_CONTROL_TOKEN must be a string of at least 16/.test(error.message));
});

test('controlSocket is relative to the config file; --control-socket and RAINBOWD_CONTROL_SOCKET to the working directory', async () => {
  const file = await configFile('{"run": "x", "controlSocket": "run/rainbowd.sock"}');
  assert.equal((await loadConfig(file)).controlSocket, path.join(path.dirname(file), 'run/rainbowd.sock'));
  assert.equal((await loadConfig(await configFile('{"run": "x"}'))).controlSocket, null);
  const fromEnv = parseRunArguments([], { RAINBOWD_CONTROL_SOCKET: 'env.sock' }).overrides;
  assert.equal((await loadConfig(file, fromEnv)).controlSocket, path.resolve('env.sock'));
  const fromFlag = parseRunArguments(['--control-socket', '/run/flag.sock'], { RAINBOWD_CONTROL_SOCKET: 'env.sock' }).overrides;
  assert.equal((await loadConfig(file, fromFlag)).controlSocket, '/run/flag.sock');
});

test('a bad --workers is a usage error, exit 2', async () => {
  const result = await promisify(execFile)(process.execPath, [cli, 'run', '--workers', 'many']).catch((error: { code: number; stderr: string }) => error);
  assert.equal((result as { code: number }).code, 2);
  assert.equal((result as { stderr: string }).stderr, 'rainbowd: --workers must be a whole number from 0 to 64, got "many" (see rainbowd help)\n');
});

test('an unknown flag is a usage error, exit 2', async () => {
  const result = await promisify(execFile)(process.execPath, [cli, 'run', '--htp-port', '1']).catch((error: { code: number; stderr: string }) => error);
  assert.equal((result as { code: number }).code, 2);
  assert.equal((result as { stderr: string }).stderr, 'rainbowd: unknown option --htp-port for run; did you mean --http-port? (see rainbowd help)\n');
});

test('rainbow.conf.example.json is a valid config', async () => {
  const config = await loadConfig(path.join(root, 'rainbow.conf.example.json'));
  assert.deepEqual(config.services.map((service) => service.name), ['default', 'admin']);
});

test('at the top level "host" is the listen address; the default service stays the catch-all', async () => {
  const file = await configFile('{"run": "x", "host": "0.0.0.0"}');
  const config = await loadConfig(file);
  assert.equal(config.host, '0.0.0.0');
  assert.deepEqual(config.services[0]!.hosts, []);
});

test('named services take hosts and path prefixes; two services may not claim the same route', async () => {
  const file = await configFile(JSON.stringify({
    run: 'site',
    services: {
      api: { target: '127.0.0.1:3000', host: ['API.example.com'], pathPrefix: '/v1/' },
      web: { run: 'web', host: '*.example.com', stripPathPrefix: false },
    },
  }));
  const [site, api, web] = (await loadConfig(file)).services;
  assert.deepEqual([site!.name, site!.hosts], ['default', []]);
  assert.deepEqual([api!.target, api!.hosts, api!.pathPrefix, api!.stripPathPrefix], ['127.0.0.1:3000', ['API.example.com'], '/v1', true]);
  assert.deepEqual([web!.run, web!.hosts, web!.pathPrefix, web!.stripPathPrefix], ['web', ['*.example.com'], null, false]);

  const clash = await configFile(JSON.stringify({ services: { a: { target: '127.0.0.1:1', host: 'x.test' }, b: { target: '127.0.0.1:2', host: 'X.test' } } }));
  await assert.rejects(loadConfig(clash), { message: `${clash}: "services.b": host is used by another service: host x.test belongs to "a"` });
  const twoCatchAlls = await configFile(JSON.stringify({ run: 'x', services: { b: { target: '127.0.0.1:2' } } }));
  await assert.rejects(loadConfig(twoCatchAlls), /"services.b": host is used by another service: the catch-all host belongs to "default"/);
});
