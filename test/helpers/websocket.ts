import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { Duplex } from 'node:stream';

// A tiny WebSocket client (Node 20 has no global WebSocket): the upgrade handshake, masked
// text frames out, frames in. Enough to hold a connection open across a deploy.

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export interface WebSocketClient {
  // The 101 answer's headers (x-generation tells which generation holds the connection).
  headers: http.IncomingHttpHeaders;
  send(text: string): void;
  // The next text message, or a rejection after `timeout` ms or when the connection ends.
  next(timeout?: number): Promise<string>;
  // Sends a close frame and waits (bounded) until the connection is closed.
  close(timeout?: number): Promise<void>;
  // Resolves when the TCP connection closed, with whether a close frame came first.
  closed: Promise<{ closeFrame: boolean; at: number }>;
}

export function openWebSocket(port: number, path: string, { headers = {}, timeout = 5000 }: { headers?: http.OutgoingHttpHeaders; timeout?: number } = {}): Promise<WebSocketClient> {
  const key = randomBytes(16).toString('base64');
  return new Promise((resolve, reject) => {
    const request = http.request({
      host: '127.0.0.1',
      port,
      path,
      agent: false,
      headers: { ...headers, connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-key': key, 'sec-websocket-version': '13' },
    });
    const timer = setTimeout(() => request.destroy(new Error(`no WebSocket handshake within ${timeout} ms`)), timeout);
    request.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    request.on('response', (response) => {
      clearTimeout(timer);
      response.resume();
      reject(new Error(`the WebSocket upgrade was answered ${response.statusCode}`));
    });
    request.on('upgrade', (response, socket, head) => {
      clearTimeout(timer);
      const expected = createHash('sha1').update(key + GUID).digest('base64');
      if (response.headers['sec-websocket-accept'] !== expected) {
        socket.destroy();
        reject(new Error(`bad Sec-WebSocket-Accept ${String(response.headers['sec-websocket-accept'])}`));
        return;
      }
      resolve(client(socket, head, response.headers));
    });
    request.end();
  });
}

function client(socket: Duplex, head: Buffer, headers: http.IncomingHttpHeaders): WebSocketClient {
  const messages: string[] = [];
  const waiters: Array<() => void> = [];
  let buffered = Buffer.from(head);
  let closeFrame = false;
  let ended = false;
  const wake = () => waiters.splice(0).forEach((waiter) => waiter());
  const closed = new Promise<{ closeFrame: boolean; at: number }>((resolve) => {
    socket.once('close', () => {
      ended = true;
      wake();
      resolve({ closeFrame, at: Date.now() });
    });
  });
  socket.on('error', () => socket.destroy());
  const onData = (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    for (let frame = readFrame(buffered); frame; frame = readFrame(buffered)) {
      buffered = buffered.subarray(frame.length);
      if (frame.opcode === 0x1) messages.push(frame.payload.toString('utf8'));
      else if (frame.opcode === 0x8) {
        closeFrame = true;
        socket.end();
      }
    }
    wake();
  };
  socket.on('data', onData);
  if (head.length > 0) onData(Buffer.alloc(0));

  return {
    headers,
    send(text) {
      socket.write(maskedFrame(0x1, Buffer.from(text, 'utf8')));
    },
    async next(timeout = 5000) {
      const deadline = Date.now() + timeout;
      while (messages.length === 0) {
        if (ended) throw new Error('the WebSocket closed before a message came');
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no WebSocket message within ${timeout} ms`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          waiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
      return messages.shift()!;
    },
    async close(timeout = 5000) {
      if (!ended) socket.write(maskedFrame(0x8, Buffer.from([0x03, 0xe8]))); // 1000: normal closure
      const timer = setTimeout(() => socket.destroy(), timeout);
      await closed;
      clearTimeout(timer);
    },
    closed,
  };
}

function readFrame(buffer: Buffer): { opcode: number; payload: Buffer; length: number } | null {
  if (buffer.length < 2) return null;
  const opcode = buffer[0]! & 0x0f;
  let length = buffer[1]! & 0x7f;
  let offset = 2;
  if (length === 126) {
    if (buffer.length < 4) return null;
    length = buffer.readUInt16BE(2);
    offset = 4;
  } else if (length === 127) {
    if (buffer.length < 10) return null;
    length = Number(buffer.readBigUInt64BE(2));
    offset = 10;
  }
  // Servers do not mask their frames.
  if (buffer.length < offset + length) return null;
  return { opcode, payload: buffer.subarray(offset, offset + length), length: offset + length };
}

// Clients must mask every frame they send.
function maskedFrame(opcode: number, payload: Buffer): Buffer {
  if (payload.length >= 126) throw new Error('this client sends short messages only');
  const mask = randomBytes(4);
  const masked = Buffer.from(payload.map((byte, i) => byte ^ mask[i % 4]!));
  return Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | payload.length]), mask, masked]);
}
