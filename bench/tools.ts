// The third-party programs the benchmark drives, found on this machine, and their versions.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { findExecutable } from '../test/helpers/executables.js';
import path from 'node:path';

export interface Tools {
  wrk?: string;
  nginx?: string;
  haproxy?: string;
  gunicorn?: string;
}

export const INSTALL_HINT = 'apt-get install wrk nginx-light haproxy gunicorn';

export async function findTools(): Promise<Tools> {
  const [wrk, nginx, haproxy, gunicorn] = await Promise.all(['wrk', 'nginx', 'haproxy', 'gunicorn'].map(findExecutable));
  return { wrk, nginx, haproxy, gunicorn };
}

/** What a results file needs to be compared with another: every version, and rainbowd's commit. */
export async function versions(tools: Tools, root: string): Promise<Record<string, string>> {
  const found: Record<string, string> = { node: process.version };
  const pkg = JSON.parse(await readFile(path.join(root, 'package.json'), 'utf8')) as { version: string };
  const commit = await firstLine('git', ['-C', root, 'describe', '--always', '--dirty', '--abbrev=10']);
  found.rainbowd = `${pkg.version}${commit ? ` (${commit})` : ''}`;
  const httpProxy = JSON.parse(await readFile(path.join(root, 'node_modules/http-proxy/package.json'), 'utf8').catch(() => '{}')) as { version?: string };
  if (httpProxy.version) found['http-proxy'] = httpProxy.version;
  const asked: [keyof Tools, string][] = [['wrk', '-v'], ['nginx', '-v'], ['haproxy', '-v'], ['gunicorn', '--version']];
  for (const [name, flag] of asked) {
    const executable = tools[name];
    if (!executable) continue;
    const line = await firstLine(executable, [flag]);
    // "nginx version: nginx/1.22.1", "HAProxy version 2.6.12-1+deb12u4 2026/10/17 - …", "wrk debian/4.1.0-3+b2 [epoll] …"
    found[name] = /\d+\.\d+[\w.+~-]*/.exec(line)?.[0] ?? line;
  }
  return found;
}

// `wrk -v` exits 1 and `nginx -v` writes to stderr: take the first line of either stream.
function firstLine(file: string, args: string[]): Promise<string> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: 5000 }, (_error, stdout, stderr) => {
      const line = `${stdout}\n${stderr}`.split('\n').find((candidate) => candidate.trim() !== '');
      resolve((line ?? '').trim());
    });
  });
}
