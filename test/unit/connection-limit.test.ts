import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { RESERVED_FDS, openFileLimit, proxyConnectionLimit } from '../../lib/connection-limit.js';

function limitsFile(t: { after: (fn: () => void) => void }, maxOpenFiles: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'rainbowd-limits-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'limits');
  writeFileSync(file, `Limit                     Soft Limit           Hard Limit           Units\nMax processes             63704                63704                processes\nMax open files            ${maxOpenFiles}                files\n`);
  return file;
}

test('the open-file limit is the soft one from /proc/self/limits; unlimited or unreadable means none', (t) => {
  assert.equal(openFileLimit(limitsFile(t, '1024                 524288')), 1024);
  assert.equal(openFileLimit(limitsFile(t, 'unlimited            unlimited')), null);
  assert.equal(openFileLimit('/nonexistent/limits'), null);
  assert.equal(typeof openFileLimit(), 'number', 'this Linux has one');
});

test('the proxy takes half of what the reserve leaves (a connection may need one descriptor to the app too), never less than 16, and no cap without a known limit', () => {
  assert.equal(proxyConnectionLimit(1024), (1024 - RESERVED_FDS) / 2);
  assert.equal(proxyConnectionLimit(524_288), (524_288 - RESERVED_FDS) / 2);
  assert.equal(proxyConnectionLimit(100), 16);
  assert.equal(proxyConnectionLimit(null), null);
});
