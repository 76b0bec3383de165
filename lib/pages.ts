import type http from 'node:http';
import type { Duplex } from 'node:stream';

// The pages rainbowd answers itself. They name nothing internal: no ports, no addresses.

export interface Page {
  status: number;
  title: string;
  text: string;
  retryAfter?: number;
}

export const NOT_FOUND: Page = { status: 404, title: 'Not Found', text: 'There is no site at this address.' };
export const STARTING: Page = { status: 503, title: 'Service Unavailable', text: 'The app is starting or restarting. Try again in a moment.', retryAfter: 1 };
export const RESTARTING: Page = { status: 503, title: 'Service Unavailable', text: 'The app is restarting. Try again in a moment.', retryAfter: 1 };
export const PAUSED: Page = { status: 503, title: 'Service Unavailable', text: 'The app is paused. Try again in a moment.', retryAfter: 5 };
export const BAD_REQUEST: Page = { status: 400, title: 'Bad Request', text: 'The request could not be understood.' };
export const BAD_GATEWAY: Page = { status: 502, title: 'Bad Gateway', text: 'The app did not answer.' };

export function maintenance(message: string | null): Page {
  return { status: 503, title: 'Service Unavailable', text: message ?? 'The site is down for maintenance. Please come back soon.', retryAfter: 60 };
}

/** The text of a page, the same from every engine. */
export function pageBody(page: Page): string {
  return `${page.status} ${page.title}\n${page.text}\n`;
}

function pageHeaders(page: Page, body: string): Record<string, string | number> {
  return {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    ...(page.retryAfter === undefined ? {} : { 'retry-after': page.retryAfter }),
  };
}

export function sendPage(response: http.ServerResponse, page: Page): void {
  const body = pageBody(page);
  response.writeHead(page.status, pageHeaders(page, body));
  response.end(body);
}

/** The same page on a socket that has no ServerResponse (an upgrade, or one the parser refused); then it closes. */
export function sendRawPage(socket: Duplex, page: Page): void {
  const body = pageBody(page);
  const headers = Object.entries({ ...pageHeaders(page, body), connection: 'close' }).map(([name, value]) => `${name}: ${value}\r\n`);
  socket.end(`HTTP/1.1 ${page.status} ${page.title}\r\n${headers.join('')}\r\n${body}`);
}
