// The rainbowd.js README example, end to end with real third-party servers:
// wrk -> nginx -> rainbowd -> gunicorn, redeployed several times under load.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import getPort from 'get-port';
import type { DaemonStatus, GenerationStatus } from '../../lib/api.js';
import {
  OutputTail,
  findExecutable,
  hasExited,
  parseWrk,
  processesMentioning,
  request,
  stopChild,
  waitForExit,
  waitUntil,
} from './helpers/system.js';

// Compiled to dist/test/e2e/: the repository root is three levels up.
const root = fileURLToPath(new URL('../../../', import.meta.url));
// wrk runs until the redeploys are done (it prints its summary on SIGINT); this only bounds it.
const wrkSeconds = 120;
const minimumRedeploys = 3;

const executables = {
  gunicorn: await findExecutable('gunicorn'),
  nginx: await findExecutable('nginx'),
  wrk: await findExecutable('wrk'),
};
const missing = Object.entries(executables)
  .filter(([, found]) => !found)
  .map(([name]) => name);
const skip = missing.length
  ? `needs ${missing.join(', ')} (apt-get install gunicorn nginx-light wrk; .ci/run does)`
  : false;

let tmp: string | undefined;
let daemon: ChildProcess | undefined;
let nginx: ChildProcess | undefined;
let wrk: ChildProcess | undefined;

after(async () => {
  await stopChild(wrk, 2000);
  await stopChild(nginx, 5000);
  await stopChild(daemon, 45_000);
  if (!tmp) return;
  // A failed test must not leave app processes behind on the machine.
  for (const leftover of await processesMentioning(tmp)) {
    try {
      process.kill(leftover.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await rm(tmp, { recursive: true, force: true });
});

const deadStates = new Set(['stopped', 'failed']);

test(
  'the rainbowd.js gunicorn example behind nginx is redeployed under wrk load with no failed request',
  { skip, timeout: 150_000 },
  async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'rainbowd-e2e-gunicorn-'));
    // nginx workers run as nobody when started by root; mkdtemp makes the directory 0700.
    await chmod(tmp, 0o755);
    const appDir = path.join(tmp, 'app');
    const nginxDir = path.join(tmp, 'nginx');
    await cp(path.join(root, 'examples/gunicorn-app'), appDir, {
      recursive: true,
      filter: (source) => !source.includes('__pycache__'),
    });
    await mkdir(nginxDir);

    const proxyPort = await getPort({ host: '127.0.0.1' });
    const controlPort = await getPort({ host: '127.0.0.1' });
    const nginxPort = await getPort({ host: '127.0.0.1' });
    const control = `http://127.0.0.1:${controlPort}`;
    const front = `http://127.0.0.1:${nginxPort}/`;

    // The example's config unchanged, on free ports.
    const exampleConfig = JSON.parse(await readFile(path.join(appDir, 'rainbow.conf.json'), 'utf8'));
    const configFile = path.join(appDir, 'rainbow.conf.json');
    await writeFile(configFile, JSON.stringify({ ...exampleConfig, port: proxyPort, controlPort }, null, 2));

    const daemonOutput = new OutputTail();
    daemon = spawn(process.execPath, [path.join(root, 'bin/rainbowd.js'), 'run', '--config', configFile], {
      cwd: appDir,
      env: daemonEnvironment(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    daemonOutput.capture(daemon.stdout, '');
    daemonOutput.capture(daemon.stderr, '');

    await writeFile(path.join(nginxDir, 'nginx.conf'), await nginxConfig(nginxDir, nginxPort, proxyPort));
    const nginxOutput = new OutputTail(20);
    nginx = spawn(
      executables.nginx!,
      ['-c', path.join(nginxDir, 'nginx.conf'), '-p', nginxDir, '-e', path.join(nginxDir, 'error.log')],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    nginxOutput.capture(nginx.stdout, 'nginx: ');
    nginxOutput.capture(nginx.stderr, 'nginx: ');

    const diagnostics = async (): Promise<string> => {
      const errorLog = await readFile(path.join(nginxDir, 'error.log'), 'utf8').catch(() => '');
      return [
        `--- rainbowd output (last lines) ---\n${daemonOutput}`,
        `--- nginx output ---\n${nginxOutput}`,
        `--- nginx error.log (tail) ---\n${errorLog.split('\n').slice(-20).join('\n')}`,
      ].join('\n');
    };
    const describeProcesses = (): string =>
      [
        hasExited(daemon!) ? `rainbowd exited (${daemon!.exitCode ?? daemon!.signalCode})` : 'rainbowd running',
        hasExited(nginx!) ? `nginx exited (${nginx!.exitCode ?? nginx!.signalCode})` : 'nginx running',
        daemonOutput.toString(),
        nginxOutput.toString(),
      ].join('\n');
    const giveUpIfGone = (): string | undefined =>
      hasExited(daemon!) ? 'rainbowd exited' : hasExited(nginx!) ? 'nginx exited' : undefined;

    // Both answer: the control API, and the app through nginx and the rainbowd proxy.
    await waitUntil(async () => (await request('GET', `${control}/status`, 2000)).status === 200, {
      timeoutMs: 30_000,
      describe: describeProcesses,
      giveUp: giveUpIfGone,
    });
    await waitUntil(async () => (await request('GET', front, 2000)).status === 200, {
      timeoutMs: 30_000,
      describe: describeProcesses,
      giveUp: giveUpIfGone,
    });
    const before = await request('GET', front, 5000);
    assert.match(before.body, /hello from gunicorn worker pid \d+/);

    // Load while `minimumRedeploys` redeploys run one after another, however long they take.
    const wrkOutput = new OutputTail(100);
    wrk = spawn(executables.wrk!, ['-t2', '-c16', `-d${wrkSeconds}s`, front], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    wrkOutput.capture(wrk.stdout, '');
    wrkOutput.capture(wrk.stderr, 'wrk: ');
    let wrkEndedAt: number | undefined;
    const wrkExit = waitForExit(wrk, (wrkSeconds + 20) * 1000).then((code) => {
      wrkEndedAt = Date.now();
      return code;
    });

    // wrk's requests reach the app through nginx, which logs each one: the load is under way
    // before the first redeploy and goes on after the last one.
    const accessLog = path.join(nginxDir, 'access.log');
    const requestsServed = async (): Promise<number> => (await readFile(accessLog, 'utf8').catch(() => '')).split('\n').length - 1;
    const moreRequests = async (count: number): Promise<void> => {
      const target = (await requestsServed()) + count;
      await waitUntil(async () => (await requestsServed()) >= target, { timeoutMs: 10_000, describe: () => `${count} more requests in nginx's access log`, giveUp: giveUpIfGone });
    };
    const redeploys: { status: number; body: string; endedAt: number }[] = [];
    await moreRequests(100);
    while (wrkEndedAt === undefined && redeploys.length < minimumRedeploys) {
      const result = await request('POST', `${control}/redeploy`, 60_000);
      redeploys.push({ ...result, endedAt: Date.now() });
      assert.equal(result.status, 200, `redeploy #${redeploys.length} refused: ${result.body}\n${await diagnostics()}`);
      // A breath between redeploys, so that the app also serves between its switches.
      await sleep(200);
    }
    await moreRequests(100);
    wrk.kill('SIGINT');
    const wrkCode = await wrkExit;
    const wrkText = wrkOutput.toString();
    assert.equal(wrkCode, 0, `wrk did not finish cleanly (${wrkCode}):\n${wrkText}`);

    const duringLoad = redeploys.filter((redeploy) => redeploy.endedAt <= wrkEndedAt!).length;
    assert.ok(
      duringLoad >= minimumRedeploys,
      `only ${duringLoad} redeploys completed while wrk ran (want ${minimumRedeploys}; wrk stops by itself after ${wrkSeconds} s):\n` +
        `${JSON.stringify(redeploys, null, 2)}\n${await diagnostics()}`,
    );

    const summary = parseWrk(wrkText);
    assert.ok(summary.requests > 0, `wrk made no request:\n${wrkText}`);
    assert.deepEqual(
      summary.socketErrors ?? { connect: 0, read: 0, write: 0, timeout: 0 },
      { connect: 0, read: 0, write: 0, timeout: 0 },
      `socket errors under redeploys:\n${wrkText}\n${await diagnostics()}`,
    );
    assert.equal(summary.non2xx3xx, undefined, `non-2xx/3xx responses under redeploys:\n${wrkText}\n${await diagnostics()}`);

    // The old generations drain and stop: one live generation is left, the active one.
    let status: DaemonStatus | undefined;
    await waitUntil(
      async () => {
        status = JSON.parse((await request('GET', `${control}/status`, 5000)).body) as DaemonStatus;
        return liveGenerations(status).length === 1;
      },
      { timeoutMs: 30_000, describe: () => `generations still alive: ${JSON.stringify(status, null, 2)}` },
    );
    const [live] = liveGenerations(status!);
    assert.equal(live!.state, 'active', JSON.stringify(status, null, 2));
    assert.equal(String(live!.id), String(status!.services[0]!.activeGeneration), JSON.stringify(status, null, 2));

    const afterRedeploys = await request('GET', front, 5000);
    assert.equal(afterRedeploys.status, 200);
    assert.notEqual(afterRedeploys.body, before.body, 'the app answering after the redeploys is not a new gunicorn');

    // SIGTERM: rainbowd drains, stops gunicorn and exits 0, leaving no process of this test.
    daemon.kill('SIGTERM');
    const daemonCode = await waitForExit(daemon, 60_000);
    assert.equal(daemonCode, 0, `rainbowd did not exit 0 on SIGTERM (${daemonCode}):\n${await diagnostics()}`);
    let leftovers = await appProcesses(tmp);
    for (let attempt = 0; leftovers.length > 0 && attempt < 10; attempt += 1) {
      await sleep(100);
      leftovers = await appProcesses(tmp);
    }
    assert.deepEqual(leftovers, [], `processes left after rainbowd exited:\n${await diagnostics()}`);
  },
);

function liveGenerations(status: DaemonStatus): GenerationStatus[] {
  return status.services.flatMap((service) => service.generations).filter((generation) => !deadStates.has(generation.state));
}

// Processes started for this test, nginx aside (it is stopped in `after`).
async function appProcesses(directory: string): Promise<string[]> {
  const processes = await processesMentioning(directory);
  return processes
    .filter((found) => !found.cmdline.startsWith('nginx'))
    .map((found) => `${found.pid} ${found.cmdline} (cwd ${found.cwd})`);
}

// The developer's environment must not move the daemon's ports (env wins over the file).
function daemonEnvironment(): NodeJS.ProcessEnv {
  const environment = { ...process.env };
  for (const name of Object.keys(environment)) {
    if (name.startsWith('RAINBOWD_') || ['HTTP_PORT', 'CONTROL_PORT', 'LOG_FORMAT'].includes(name)) delete environment[name];
  }
  return environment;
}

// examples/nginx/rainbowd.conf, moved to free ports, inside a self-contained nginx.conf.
async function nginxConfig(directory: string, listenPort: number, proxyPort: number): Promise<string> {
  const example = await readFile(path.join(root, 'examples/nginx/rainbowd.conf'), 'utf8');
  const replacements: [string, string][] = [
    ['server 127.0.0.1:7000;', `server 127.0.0.1:${proxyPort};`],
    ['listen 80;', `listen 127.0.0.1:${listenPort};`],
    ['listen [::]:80;', ''],
  ];
  let serverBlock = example;
  for (const [from, to] of replacements) {
    assert.ok(serverBlock.includes(from), `examples/nginx/rainbowd.conf no longer contains "${from}"`);
    serverBlock = serverBlock.replace(from, to);
  }
  const inside = (name: string): string => path.join(directory, name);
  return `daemon off;
worker_processes 1;
pid ${inside('nginx.pid')};
error_log ${inside('error.log')} warn;
events { worker_connections 512; }
http {
  access_log ${inside('access.log')};
  client_body_temp_path ${inside('client_body')};
  proxy_temp_path ${inside('proxy')};
  fastcgi_temp_path ${inside('fastcgi')};
  uwsgi_temp_path ${inside('uwsgi')};
  scgi_temp_path ${inside('scgi')};
${serverBlock}
}
`;
}
