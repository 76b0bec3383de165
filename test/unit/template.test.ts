import assert from 'node:assert/strict';
import { test } from 'node:test';
import { execa } from 'execa';
import { expandRun, launchCommand } from '../../lib/template.js';

const values = { port: 41234, pidfile: '/tmp/rainbowd x/default-3.pid', generation: 3 };

test('$1 and $2 are the shell\'s own positional parameters: port and pidfile', async () => {
  const { file, args } = launchCommand('printf "%s|%s" "$1" "$2"', values);
  const { stdout } = await execa(file, args);
  assert.equal(stdout, '41234|/tmp/rainbowd x/default-3.pid');
});

test('a trailing lone -- of a rainbowd.js config is dropped (gunicorn rejects it)', () => {
  assert.equal(expandRun('gunicorn app:app --bind 127.0.0.1:$1 --pid $2 --', values), 'gunicorn app:app --bind 127.0.0.1:$1 --pid $2');
  assert.equal(expandRun('gunicorn app:app --', values), 'gunicorn app:app');
  assert.equal(expandRun('node server.js --port=$1 --flag--', values), 'node server.js --port=$1 --flag--');
  assert.equal(expandRun('app -- --port $1', values), 'app -- --port $1');
});

test('{port}, {pidfile} and {generation} are replaced, the pidfile quoted for the shell', async () => {
  const { file, args } = launchCommand('printf "%s|%s|%s" {port} {pidfile} {generation}', values);
  const { stdout } = await execa(file, args);
  assert.equal(stdout, '41234|/tmp/rainbowd x/default-3.pid|3');
});
