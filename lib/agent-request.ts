import http from 'node:http';
import { bodyOf, type ErrorResponder, originForm, retryable, unforwardable, writeAnswerHead } from './forwarded-request.js';
import { sendPage } from './pages.js';
import type { Upstream } from './upstream.js';

// One ordinary request forwarded with node:http's client, for an app that closes every
// connection (gunicorn's sync workers): there each request pays a new connection, and
// node:http opens one for about half the CPU undici takes (README, Performance). The same
// contract as forwarded-request.ts: counted in flight until the client's response closes,
// streamed both ways with back-pressure (pipe), the client's abort passed on, an idempotent
// request broken before any answer sent again once, and the same pages for what fails.

export function forwardOverAgent(request: http.IncomingMessage, headers: http.IncomingHttpHeaders, response: http.ServerResponse, upstream: Upstream, agent: http.Agent, respondWithError: ErrorResponder): void {
  const target = request.url ?? '/';
  const method = request.method ?? 'GET';
  const path = originForm(target);
  const body = bodyOf(request);
  const answerError = (error: NodeJS.ErrnoException) => respondWithError(error, (page) => sendPage(response, page));
  let outgoing: http.ClientRequest | null = null;
  upstream.requestStarted();
  response.once('close', () => {
    upstream.requestFinished();
    if (!response.writableFinished) outgoing?.destroy();
  });
  if (path === '') return answerError(unforwardable(target, 'not a URL'));
  const { host, port } = upstream.proxyTarget;

  const send = (retried: boolean): void => {
    let answering = false;
    const sent = http.request({ agent, host, port, method, path, headers, setHost: false });
    outgoing = sent;
    sent.on('response', (answer) => {
      try {
        writeAnswerHead(response, answer.statusCode!, answer.statusMessage, answer.rawHeaders);
      } catch (error) {
        sent.destroy();
        return answerError(error as Error); // a field value node:http will not write
      }
      answering = true;
      // An answer the app broke off is cut for the client too, not completed.
      answer.on('error', () => response.destroy());
      answer.once('close', () => {
        if (!answer.complete) response.destroy();
      });
      answer.pipe(response);
    });
    sent.on('error', (error: NodeJS.ErrnoException) => {
      if (response.destroyed) return; // the client left: its close ended this
      if (answering) return void response.destroy();
      if (!retried && retryable(method, body, error)) return void setImmediate(() => response.destroyed || send(true));
      answerError(error);
    });
    if (body === null) sent.end();
    else body.pipe(sent);
  };
  send(false);
}
