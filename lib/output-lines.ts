import type { Readable } from 'node:stream';

// An app's output, split into lines with bounded memory: whatever an app prints (600 MB
// without a newline, a binary blob), rainbowd holds at most one line's first bytes. A longer
// line is cut there and ends with a note of how much of it was dropped. Like readline, a
// line ends at LF, CRLF or a lone CR, and a last line without its newline still counts.

export const MAX_LINE_BYTES = 64 * 1024;

const LF = 0x0a;
const CR = 0x0d;

export function readOutputLines(input: Readable, onLine: (line: string) => void, maxLineBytes = MAX_LINE_BYTES): void {
  const kept: Buffer[] = [];
  let keptBytes = 0;
  let droppedBytes = 0;
  let afterCR = false;

  const keep = (bytes: Buffer): void => {
    const room = maxLineBytes - keptBytes;
    if (bytes.length > room) droppedBytes += bytes.length - room;
    if (room <= 0) return;
    // A copy, so that the rest of a large chunk is not held on to by this slice.
    const part = Buffer.from(bytes.subarray(0, room));
    kept.push(part);
    keptBytes += part.length;
  };

  const endLine = (): void => {
    const bytes = Buffer.concat(kept, keptBytes);
    let line: string;
    if (droppedBytes === 0) line = bytes.toString('utf8');
    else {
      const end = wholeCharacters(bytes);
      line = `${bytes.toString('utf8', 0, end)}… [line cut at ${formatSize(maxLineBytes)}, ${droppedBytes + bytes.length - end} bytes dropped]`;
    }
    kept.length = 0;
    keptBytes = 0;
    droppedBytes = 0;
    onLine(line);
  };

  input.on('data', (chunk: Buffer | string) => {
    const data = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    let start = 0;
    for (let index = 0; index < data.length; index++) {
      const byte = data[index];
      if (byte !== LF && byte !== CR) continue;
      // The LF of a CRLF whose CR ended the line already, maybe in the previous chunk.
      if (byte === LF && afterCR && index === start) {
        afterCR = false;
        start = index + 1;
        continue;
      }
      keep(data.subarray(start, index));
      endLine();
      afterCR = byte === CR;
      start = index + 1;
    }
    if (start < data.length) {
      afterCR = false;
      keep(data.subarray(start));
    }
  });
  input.on('end', () => {
    if (keptBytes > 0 || droppedBytes > 0) endLine();
  });
}

/** How many bytes of `bytes` make whole UTF-8 characters: a cut must not split one. */
function wholeCharacters(bytes: Buffer): number {
  let lead = bytes.length - 1;
  while (lead > 0 && bytes.length - lead < 4 && (bytes[lead]! & 0xc0) === 0x80) lead--;
  const first = bytes[lead] ?? 0;
  const length = first >= 0xf0 ? 4 : first >= 0xe0 ? 3 : first >= 0xc0 ? 2 : 1;
  return bytes.length - lead >= length ? bytes.length : lead;
}

function formatSize(bytes: number): string {
  return bytes % 1024 === 0 ? `${bytes / 1024} KB` : `${bytes} bytes`;
}
