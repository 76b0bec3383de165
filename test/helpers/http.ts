import http from 'node:http';

export interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  elapsedMs: number;
}

export interface RequestOptions {
  method?: string;
  // Bounds the whole exchange, body included: a request never hangs a test.
  timeout?: number;
  agent?: http.Agent | false;
  body?: string;
  // Extra request headers, e.g. `{ host: 'a.test' }` to pick a service by its host.
  headers?: http.OutgoingHttpHeaders;
  // Aborting it is the client giving up: the request is destroyed, the promise rejects.
  signal?: AbortSignal;
}

export function request(port: number, path: string, { method = 'GET', timeout = 5000, agent, body, headers, signal }: RequestOptions = {}): Promise<Response> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, agent, signal, ...(headers === undefined ? {} : { headers }) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () => {
        clearTimeout(timer);
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text, elapsedMs: Date.now() - started });
      });
    });
    const timer = setTimeout(() => req.destroy(new Error(`no complete response within ${timeout} ms`)), timeout);
    req.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    req.end(body);
  });
}

export function header(response: Response, name: string): string | undefined {
  const value = response.headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}
