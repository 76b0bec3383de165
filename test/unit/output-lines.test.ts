import assert from 'node:assert/strict';
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { readOutputLines } from '../../lib/output-lines.js';

async function linesOf(chunks: Array<string | Buffer>, maxLineBytes?: number): Promise<string[]> {
  const input = new PassThrough();
  const lines: string[] = [];
  readOutputLines(input, (line) => lines.push(line), maxLineBytes);
  for (const chunk of chunks) input.write(chunk);
  input.end();
  await once(input, 'end');
  return lines;
}

test('output splits into lines at LF, CRLF (even across chunks) and a lone CR, and a last line without newline counts', async () => {
  assert.deepEqual(await linesOf(['a\nb\r', '\nc\rd\r\n\ne']), ['a', 'b', 'c', 'd', '', 'e']);
});

test('a line longer than the limit keeps its first bytes and says how many were dropped, across chunks', async () => {
  assert.deepEqual(await linesOf(['abcdef', 'ghij\nnext\n'], 4), ['abcd… [line cut at 4 bytes, 6 bytes dropped]', 'next']);
});

test('a cut never splits a UTF-8 character: its bytes before the limit are dropped with the rest', async () => {
  // "é" is 2 bytes, "€" 3: the limit of 4 falls inside the euro sign.
  const [line] = await linesOf([Buffer.from('aé€x\n')], 4);
  assert.equal(line, 'aé… [line cut at 4 bytes, 4 bytes dropped]');
});

test('characters split between chunks are decoded whole', async () => {
  const euro = Buffer.from('€');
  assert.deepEqual(await linesOf([euro.subarray(0, 1), euro.subarray(1), Buffer.from('\n')]), ['€']);
});
