import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import getPort from 'get-port';
import { cli, describeCli, runCli } from '../helpers/cli.js';
import { startDaemon, type Daemon } from '../helpers/daemon.js';
import { request, type Response } from '../helpers/http.js';
import { uniqueMarker } from '../helpers/process.js';
import { startTarget } from '../helpers/target.js';
import { waitFor } from '../helpers/wait.js';

// The control API can stop every site on the server, and the operator's browser can reach
// it: a page they visit, or a domain rebound to 127.0.0.1, must not be able to drive it.
// Each refused request is checked to have changed nothing.

const TOKEN = 'f3a9c1e07b5d42e8a6c0d9b1e2f4a7c3';

async function startGuarded(t: TestContext, name: string, config: Record<string, unknown> = {}): Promise<Daemon> {
  const marker = uniqueMarker(name);
  const target = await startTarget(t, { service: 'default', label: 'live', marker });
  return startDaemon(t, { marker, config: { target: target.address, healthCheckPath: '/health', ...config } });
}

function control(daemon: Daemon, path: string, method: string, headers: http.OutgoingHttpHeaders, body = ''): Promise<Response> {
  return request(daemon.controlPort, path, { method, headers, body });
}

function errorCode(response: Response): string | undefined {
  return (JSON.parse(response.body) as { error?: { code?: string } }).error?.code;
}

// What a refused request could have changed: the site still serves, the service is running
// on the same generation, nothing was saved.
async function assertNothingChanged(daemon: Daemon, generation: number): Promise<void> {
  const service = await daemon.service();
  assert.deepEqual([service.mode, service.activeGeneration], ['running', generation]);
  assert.equal((await request(daemon.proxyPort, '/')).status, 200, 'the site still serves');
  assert.equal(existsSync(join(daemon.dir, 'rainbow.state.json')), false, 'nothing was saved');
}

// The ways a page can reach the control API: every one changes something if it gets through.
const changes: Array<[string, string, string]> = [
  ['POST', '/services/default/stop', '{"message":"pwned"}'],
  ['POST', '/services/default/pause?maxPause=1h', ''],
  ['POST', '/redeploy', ''],
  ['DELETE', '/services/default', ''],
  ['PUT', '/services/evil', '{"target":"127.0.0.1:7000","host":"evil.test"}'],
];

test('requests a web page sends (a foreign Origin, Sec-Fetch-Site cross-site or same-site) are refused with 403 and change nothing', { timeout: 60_000 }, async (t) => {
  const daemon = await startGuarded(t, 'control-csrf');
  const generation = (await daemon.service()).activeGeneration!;
  const hostile: http.OutgoingHttpHeaders[] = [
    { origin: 'http://evil.example' },
    { origin: 'null' },
    { origin: `http://localhost:${daemon.proxyPort}` },
    { 'sec-fetch-site': 'cross-site' },
    { 'sec-fetch-site': 'same-site' },
  ];
  for (const headers of hostile) {
    for (const [method, path, body] of changes) {
      const response = await control(daemon, path, method, { 'content-type': 'text/plain', ...headers }, body);
      assert.equal(response.status, 403, `${method} ${path} with ${JSON.stringify(headers)}: ${response.body}`);
      assert.equal(errorCode(response), 'CROSS_SITE_REQUEST');
    }
    assert.equal((await control(daemon, '/status', 'GET', headers)).status, 403, 'a page cannot read the status either');
  }
  await assertNothingChanged(daemon, generation);
  assert.doesNotMatch(daemon.log(), /stopped|paused|removed|default#2/);

  // The listener's own origin, and what browsers send for requests typed in the address bar.
  for (const headers of [{ origin: `http://127.0.0.1:${daemon.controlPort}` }, { 'sec-fetch-site': 'same-origin' }, { 'sec-fetch-site': 'none' }]) {
    assert.equal((await control(daemon, '/status', 'GET', headers)).status, 200, JSON.stringify(headers));
  }
});

test('a Host that is not a loopback name of the control listener (DNS rebinding) gets 421 and changes nothing', { timeout: 60_000 }, async (t) => {
  const daemon = await startGuarded(t, 'control-rebinding');
  const generation = (await daemon.service()).activeGeneration!;
  const port = daemon.controlPort;
  // A rebound page is same-origin with itself: its Origin matches its Host.
  for (const host of ['evil.example', `evil.example:${port}`, `localhost.evil.example:${port}`, `127.0.0.1.nip.io:${port}`, `localhost:${daemon.proxyPort}`, `192.168.1.10:${port}`]) {
    for (const [method, path, body] of changes) {
      const response = await control(daemon, path, method, { host, origin: `http://${host}` }, body);
      assert.equal(response.status, 421, `${method} ${path} with Host ${host}: ${response.body}`);
      assert.equal(errorCode(response), 'MISDIRECTED_REQUEST');
    }
    assert.equal((await control(daemon, '/status', 'GET', { host })).status, 421, `GET /status with Host ${host}`);
  }
  await assertNothingChanged(daemon, generation);

  for (const host of ['localhost', `localhost:${port}`, `LOCALHOST:${port}`, `127.0.0.1:${port}`, `127.0.0.1`, `[::1]:${port}`, '[::1]']) {
    assert.equal((await control(daemon, '/status', 'GET', { host })).status, 200, `Host ${host}`);
  }
  // HTTP/1.0 without Host: a local script, never a browser.
  assert.match(await rawExchange(port, 'GET /status HTTP/1.0\r\n\r\n'), /^HTTP\/1\.1 200 /);
});

test('curl -d "" localhost:PORT/redeploy (the git hook) and the CLI keep working', { timeout: 60_000 }, async (t) => {
  const daemon = await startGuarded(t, 'control-curl');
  for (const url of [`localhost:${daemon.controlPort}/redeploy`, `http://127.0.0.1:${daemon.controlPort}/redeploy`]) {
    const { stdout } = await promisify(execFile)('curl', ['-sS', '--fail-with-body', '-d', '', url], { timeout: 30_000 });
    assert.equal((JSON.parse(stdout) as { ok: boolean }).ok, true, stdout);
  }
  const status = await cli(daemon, ['status']);
  assert.equal(status.code, 0, describeCli(status));
  const redeployed = await runCli(['redeploy'], { cwd: daemon.dir });
  assert.equal(redeployed.code, 0, describeCli(redeployed));
});

test('with a controlToken every request needs it: missing or wrong gets 401 and changes nothing; the CLI sends it from the config or RAINBOWD_CONTROL_TOKEN', { timeout: 60_000 }, async (t) => {
  const daemon = await startGuarded(t, 'control-token', { controlToken: TOKEN });
  const generation = (await daemon.service()).activeGeneration!;
  for (const authorization of [undefined, `Bearer ${TOKEN.slice(0, -1)}`, `Bearer ${TOKEN}x`, `Basic ${TOKEN}`, TOKEN]) {
    const headers = authorization === undefined ? {} : { authorization };
    for (const [method, path, body] of changes) {
      const response = await control(daemon, path, method, headers, body);
      assert.equal(response.status, 401, `${method} ${path} with ${authorization}: ${response.body}`);
      assert.equal(errorCode(response), 'UNAUTHORIZED');
      assert.equal(response.headers['www-authenticate'], 'Bearer');
    }
  }
  await assertNothingChanged(daemon, generation);

  const status = await control(daemon, '/status', 'GET', { authorization: `bearer ${TOKEN}` });
  assert.equal(status.status, 200);
  assert.equal((JSON.parse(status.body) as { control: { token: boolean } }).control.token, true);
  assert.doesNotMatch(status.body, new RegExp(TOKEN), 'status does not reveal the token');

  const fromConfig = await cli(daemon, ['status', '--json']);
  assert.equal(fromConfig.code, 0, describeCli(fromConfig));
  assert.doesNotMatch(fromConfig.stdout, new RegExp(TOKEN));
  const elsewhere = mkdtempSync(join(tmpdir(), 'rainbowd-no-config-'));
  t.after(() => rmSync(elsewhere, { recursive: true, force: true }));
  const withoutToken = await runCli(['status', '--control-port', String(daemon.controlPort)], { cwd: elsewhere });
  assert.equal(withoutToken.code, 1, describeCli(withoutToken));
  assert.match(withoutToken.stderr, /^rainbowd: the control API needs its token and no Authorization: Bearer token was sent; .*RAINBOWD_CONTROL_TOKEN\n$/);
  const fromEnv = await runCli(['pause', 'default', '--control-port', String(daemon.controlPort)], { cwd: elsewhere, env: { RAINBOWD_CONTROL_TOKEN: TOKEN } });
  assert.equal(fromEnv.code, 0, describeCli(fromEnv));
  assert.equal((await daemon.service()).mode, 'paused');
  assert.doesNotMatch(daemon.log(), new RegExp(TOKEN), 'the token is never logged');
});

test('with a controlToken the control API may listen on every address, and answers to Host names that are IP addresses', { timeout: 60_000 }, async (t) => {
  const daemon = await startGuarded(t, 'control-token-wide', { controlToken: TOKEN, controlHost: '0.0.0.0' });
  const authorization = `Bearer ${TOKEN}`;
  assert.equal((await control(daemon, '/status', 'GET', { host: `192.0.2.10:${daemon.controlPort}`, authorization })).status, 200);
  assert.equal((await control(daemon, '/status', 'GET', { host: `evil.example:${daemon.controlPort}`, authorization })).status, 421);
  assert.equal((await control(daemon, '/status', 'GET', { host: `192.0.2.10:${daemon.controlPort}` })).status, 401);
});

test('controlSocket serves the control API on a unix socket created 0600, used by the CLI, removed at exit; a stale one is replaced', { timeout: 60_000 }, async (t) => {
  const daemon = await startGuarded(t, 'control-socket', { controlSocket: 'control.sock' });
  const socket = join(daemon.dir, 'control.sock');
  const stat = statSync(socket);
  assert.ok(stat.isSocket());
  assert.equal(stat.mode & 0o777, 0o600);

  // The CLI uses the socket its config names: this config's TCP port has nothing behind it.
  const elsewhere = mkdtempSync(join(tmpdir(), 'rainbowd-socket-client-'));
  t.after(() => rmSync(elsewhere, { recursive: true, force: true }));
  const closedPort = await getPort({ host: '127.0.0.1', exclude: [daemon.proxyPort, daemon.controlPort] });
  writeFileSync(join(elsewhere, 'rainbow.conf.json'), JSON.stringify({ target: '127.0.0.1:1', controlPort: closedPort, controlSocket: socket }));
  const paused = await runCli(['pause', 'default'], { cwd: elsewhere });
  assert.equal(paused.code, 0, describeCli(paused));
  assert.equal((await daemon.service()).mode, 'paused');
  const resumed = await runCli(['resume', 'default'], { cwd: tmpdir(), env: { RAINBOWD_CONTROL_SOCKET: socket } });
  assert.equal(resumed.code, 0, describeCli(resumed));

  // curl --unix-socket: Host means nothing there, Origin still does.
  const curl = (...args: string[]) => promisify(execFile)('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--unix-socket', socket, ...args], { timeout: 30_000 });
  assert.equal((await curl('-d', '', 'http://rainbowd/redeploy')).stdout, '200');
  assert.equal((await curl('-H', 'Origin: http://evil.example', '-d', '', 'http://rainbowd/services/default/stop')).stdout, '403');
  assert.equal((await daemon.service()).mode, 'running');

  // A second rainbowd on the same socket is refused while the first answers on it.
  const [proxyPort, controlPort] = [await getPort({ host: '127.0.0.1' }), await getPort({ host: '127.0.0.1' })];
  writeFileSync(join(elsewhere, 'second.json'), JSON.stringify({ target: '127.0.0.1:1', warmupTime: 1, workers: 0, port: proxyPort, controlPort, controlSocket: socket }));
  const second = await runCli(['run', '--config', join(elsewhere, 'second.json')], { cwd: elsewhere, timeout: 30_000 });
  assert.equal(second.code, 1, describeCli(second));
  assert.match(second.stderr, /^rainbowd: cannot listen on .*control\.sock for the control API: something answers on it \(is another rainbowd running\?\)\n$/);
  assert.equal((await daemon.service()).mode, 'running', 'the first one still answers');

  assert.deepEqual(await daemon.stop(), { code: 0, signal: null });
  assert.equal(existsSync(socket), false, 'the socket is removed at exit');

  // A socket file a killed rainbowd left behind (nothing answers on it) is replaced.
  await leaveStaleSocket(socket);
  assert.ok(statSync(socket).isSocket());
  const next = await startDaemon(t, { dir: daemon.dir, config: { target: '127.0.0.1:1', warmupTime: 1, controlSocket: 'control.sock' }, waitUntilActive: false });
  const status = await runCli(['status', '--control-socket', socket], { cwd: tmpdir() });
  assert.equal(status.code, 0, describeCli(status));
  assert.match(status.stdout, new RegExp(`pid ${next.pid}`));
});

test('a body over the 64 KB limit is answered 413 naming the limit, with Content-Length or chunked, and changes nothing', { timeout: 60_000 }, async (t) => {
  const daemon = await startGuarded(t, 'control-body-limit');
  const generation = (await daemon.service()).activeGeneration!;
  const large = `{"message":"${'x'.repeat(100 * 1024)}"}`;
  const withLength = await control(daemon, '/services/default/stop', 'POST', {}, large);
  assert.equal(withLength.status, 413, withLength.body);
  assert.match(withLength.body, /larger than the control API's limit of 65536 bytes/);

  const chunked = await sendChunkedUntilAnswered(daemon.controlPort, '/services/default/stop');
  assert.equal(chunked.status, 413, chunked.body);
  assert.equal(errorCode(chunked), 'BODY_TOO_LARGE');
  await assertNothingChanged(daemon, generation);
});

test('a change the state file cannot keep is live and answered 200 with a warning, which the CLI prints; the next save works again', { timeout: 60_000 }, async (t) => {
  const daemon = await startGuarded(t, 'control-state-warning');
  // StateFile writes a temporary file and renames it: a directory in its way fails the write (root ignores chmod).
  const blocker = join(daemon.dir, `rainbow.state.json.${daemon.pid}.tmp`);
  mkdirSync(blocker);
  const stopped = await control(daemon, '/services/default/stop', 'POST', {}, '{"message":"Back soon"}');
  assert.equal(stopped.status, 200);
  assert.match((JSON.parse(stopped.body) as { warning?: string }).warning ?? '', /^the change is live but was not saved, so a restart of rainbowd will undo it: .*rainbow\.state\.json: EISDIR/);
  assert.equal((await request(daemon.proxyPort, '/')).status, 503, 'the stop took effect');

  const paused = await cli(daemon, ['pause', 'default']);
  assert.equal(paused.code, 0, describeCli(paused));
  assert.match(paused.stderr, /^rainbowd: warning: the change is live but was not saved, so a restart of rainbowd will undo it: .*EISDIR/);

  rmSync(blocker, { recursive: true });
  const resumed = await cli(daemon, ['resume', 'default']);
  assert.equal(resumed.code, 0, describeCli(resumed));
  assert.equal(resumed.stderr, '');
  await waitFor(() => existsSync(join(daemon.dir, 'rainbow.state.json')), { timeout: 5000, what: 'the state file' });
});

const chromium = spawnSync('chromium', ['--version'], { stdio: 'ignore', timeout: 30_000 }).status === 0;

test('a page in a real browser (chromium), served from another localhost port, cannot stop a service through the control API', { timeout: 90_000, skip: chromium ? false : 'chromium is not installed (apt-get install chromium)' }, async (t) => {
  const daemon = await startGuarded(t, 'control-browser');
  const generation = (await daemon.service()).activeGeneration!;
  const targets = [`http://127.0.0.1:${daemon.controlPort}`, `http://localhost:${daemon.controlPort}`];
  // What the attacker does: "simple" requests, which the browser sends without asking.
  const page = `<script>
    const attempts = ${JSON.stringify(targets)}.flatMap((base) => [
      fetch(base + '/services/default/stop', { method: 'POST', mode: 'no-cors', body: '{"message":"pwned"}' }),
      fetch(base + '/services/default/pause?maxPause=1h', { method: 'POST', mode: 'no-cors' }),
    ]);
    Promise.allSettled(attempts).then(() => fetch('/done'));
  </script>`;
  let done = false;
  const site = http.createServer((req, res) => {
    if (req.url === '/done') done = true;
    res.writeHead(200, { 'content-type': 'text/html' }).end(page);
  });
  await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
  t.after(() => site.close());
  const profile = mkdtempSync(join(tmpdir(), 'rainbowd-chromium-'));
  const browser = spawn('chromium', [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`, `http://127.0.0.1:${(site.address() as net.AddressInfo).port}/`,
  ], { stdio: 'ignore', detached: true });
  t.after(async () => {
    // Chromium's helper processes (renderer, GPU, crash handler) write to the profile too:
    // the whole process group goes, and the removal retries while the last writes land.
    if (browser.exitCode === null && browser.signalCode === null) {
      const exited = new Promise((resolve) => browser.once('exit', resolve));
      process.kill(-browser.pid!, 'SIGKILL');
      await exited;
    }
    try {
      process.kill(-browser.pid!, 'SIGKILL');
    } catch {
      // the group is gone already
    }
    rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
  });
  await waitFor(() => done, { timeout: 60_000, what: 'the page to have sent its requests' });
  await assertNothingChanged(daemon, generation);
});

/** Sends `text` on a fresh connection and returns what comes back until the server closes. */
function rawExchange(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.end(text));
    let answer = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (answer += chunk));
    socket.on('end', () => resolve(answer));
    socket.on('error', reject);
    socket.setTimeout(10_000, () => socket.destroy(new Error('no answer within 10 s')));
  });
}

/** A chunked upload that goes on (up to 8 MB) until the server answers; the answer. */
function sendChunkedUntilAnswered(port: number, path: string): Promise<Response> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: 'POST', headers: { 'transfer-encoding': 'chunked' } }, (res) => {
      answered = true;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, elapsedMs: Date.now() - started }));
      res.on('error', reject);
    });
    req.on('error', reject);
    let answered = false;
    let sent = 0;
    const chunk = Buffer.alloc(16 * 1024, 'x');
    const writeMore = (): void => {
      while (!answered && sent < 8 << 20) {
        sent += chunk.length;
        if (!req.write(chunk)) return void req.once('drain', writeMore);
      }
      if (!answered) req.end();
    };
    writeMore();
  });
}

/** A unix socket file with nothing listening on it, as a killed process leaves one. */
async function leaveStaleSocket(file: string): Promise<void> {
  // Node removes its socket file only on close(): a SIGKILLed listener leaves it.
  const script = `require('net').createServer().listen(${JSON.stringify(file)}, () => process.kill(process.pid, 'SIGKILL'))`;
  await promisify(execFile)(process.execPath, ['-e', script]).catch(() => undefined);
}
