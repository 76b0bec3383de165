// What the CLI says to a user who typed something wrong: one line, exit 2, the likely fix.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { test } from 'node:test';
import { closest } from '../../lib/suggest.js';
import { describeCli, runCli } from '../helpers/cli.js';

async function expectUsageError(args: string[], message: RegExp): Promise<void> {
  const result = await runCli(args, { timeout: 10_000 });
  assert.equal(result.code, 2, describeCli(result));
  assert.match(result.stderr.trim(), message, describeCli(result));
  assert.equal(result.stderr.trim().split('\n').length, 1, `more than one line: ${describeCli(result)}`);
  assert.equal(result.stdout, '');
}

test('a misspelt command gets the command that was probably meant', async () => {
  await expectUsageError(['redepoly'], /^rainbowd: unknown command "redepoly"; did you mean "redeploy"\?/);
  await expectUsageError(['stauts'], /^rainbowd: unknown command "stauts"; did you mean "status"\?/);
  await expectUsageError(['help', 'lisst'], /^rainbowd: no help for unknown command "lisst"; did you mean "list"\?/);
});

test('a name that every object has is an unknown command, not a silent exit', async () => {
  await expectUsageError(['constructor'], /^rainbowd: unknown command "constructor" \(commands: run, /);
  await expectUsageError(['toString'], /^rainbowd: unknown command "toString"/);
  await expectUsageError(['help', 'constructor'], /^rainbowd: no help for unknown command "constructor"/);
});

test('a misspelt option names the command and the option that was probably meant', async () => {
  await expectUsageError(['status', '--jsn'], /^rainbowd: unknown option --jsn for status; did you mean --json\? \(see rainbowd help\)$/);
  await expectUsageError(['deploy', 'api', '--targt', '127.0.0.1:3000'], /^rainbowd: unknown option --targt for deploy; did you mean --target\?/);
});

test('an option value that starts with a dash is taken as the value and checked as one', async () => {
  await expectUsageError(['run', '--workers', '-1'], /^rainbowd: --workers must be a whole number from 0 to 64, got "-1"/);
});

test('arguments a command does not take are refused, not ignored', async () => {
  await expectUsageError(['status', '--json', 'extra'], /^rainbowd: status takes no arguments, got "extra"/);
  await expectUsageError(['list', 'extra'], /^rainbowd: list takes no arguments, got "extra"/);
  await expectUsageError(['run', 'extra'], /^rainbowd: run takes no arguments, got "extra"/);
});

test('deploy checks the target before it contacts the daemon', async (t) => {
  let connections = 0;
  const server = net.createServer((socket) => {
    connections++;
    socket.destroy();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  const port = String((server.address() as net.AddressInfo).port);
  await expectUsageError(['deploy', 'api', '--target', 'nope', '--control-port', port], /^rainbowd: deploy api: "target" must be a "host:port" address/);
  assert.equal(connections, 0, 'the CLI contacted the daemon with a target it could have refused itself');
});

test('help lists --version and says what --json does', async () => {
  const general = await runCli(['help']);
  assert.match(general.stdout, /^\s+--version\s+the installed version$/m);
  const list = await runCli(['help', 'list']);
  assert.match(list.stdout, /^\s+--json\s+\S.*JSON/m);
});

test('a suggestion is offered for typos only, not for other words', () => {
  assert.equal(closest('redepoly', ['redeploy', 'remove']), 'redeploy');
  assert.equal(closest('healthCheckPth', ['healthCheckPath', 'healthCheck']), 'healthCheckPath');
  assert.equal(closest('foo', ['run', 'list']), undefined);
  assert.equal(closest('deploy-now', ['status', 'list']), undefined);
});
