import http from 'node:http';

// A server-sent-events client that records when each event arrived and how the stream ended.

export interface EventStream {
  status: number;
  headers: http.IncomingHttpHeaders;
  events: Array<{ data: string; at: number }>;
  // 'end': the server finished the stream; 'aborted': the connection was cut mid-stream.
  ended: Promise<{ how: 'end' | 'aborted'; at: number }>;
  close(): void;
}

export function openEventStream(port: number, path: string, { headers = {}, timeout = 5000 }: { headers?: http.OutgoingHttpHeaders; timeout?: number } = {}): Promise<EventStream> {
  return new Promise((resolve, reject) => {
    const request = http.get({ host: '127.0.0.1', port, path, headers, agent: false }, (response) => {
      clearTimeout(timer);
      const events: EventStream['events'] = [];
      let partial = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        const blocks = (partial + chunk).split('\n\n');
        partial = blocks.pop() ?? '';
        for (const block of blocks) {
          const data = block.split('\n').filter((line) => line.startsWith('data: ')).map((line) => line.slice(6)).join('\n');
          events.push({ data, at: Date.now() });
        }
      });
      const ended = new Promise<{ how: 'end' | 'aborted'; at: number }>((done) => {
        let finished = false;
        response.on('end', () => (finished = true));
        response.on('error', () => undefined);
        response.on('close', () => done({ how: finished ? 'end' : 'aborted', at: Date.now() }));
      });
      resolve({ status: response.statusCode ?? 0, headers: response.headers, events, ended, close: () => request.destroy() });
    });
    const timer = setTimeout(() => request.destroy(new Error(`no response headers within ${timeout} ms`)), timeout);
    request.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}
