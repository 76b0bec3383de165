import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { startAppDaemon } from '../helpers/daemon.js';
import { testEachEngine } from '../helpers/engines.js';
import { header, request } from '../helpers/http.js';
import { isAlive } from '../helpers/process.js';
import { openEventStream } from '../helpers/sse.js';
import { openWebSocket } from '../helpers/websocket.js';
import { waitFor } from '../helpers/wait.js';

// Long-lived connections count as in flight: a deploy drains them (up to drainTimeout)
// instead of cutting them, as kamal-proxy does for WebSockets.

async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

testEachEngine('a WebSocket open across a deploy keeps echoing until the client closes it, and only then is the old generation stopped', { timeout: 60_000 }, async (t, engine) => {
  const { daemon } = await startAppDaemon(t, { name: 'websocket-drain', engine, config: { drainTimeout: '30s' } });
  const old = await daemon.waitForActive();
  const socket = await openWebSocket(daemon.proxyPort, '/chat');
  assert.equal(socket.headers['x-generation'], String(old.id));
  socket.send('before the deploy');
  assert.equal(await socket.next(), 'before the deploy');

  const redeploying = daemon.redeploy();
  const next = await daemon.waitForActive({ after: old.id });
  await waitFor(
    async () => {
      const draining = (await daemon.service()).generations.find((generation) => generation.id === old.id);
      return draining?.state === 'draining' && draining.inFlight === 1;
    },
    { timeout: 5000, what: `generation #${old.id} draining with the WebSocket in flight` },
  );
  // A new WebSocket goes to the new generation while the old one still serves its own.
  const fresh = await openWebSocket(daemon.proxyPort, '/chat');
  assert.equal(fresh.headers['x-generation'], String(next.id));
  await fresh.close();
  for (let i = 0; i < 5; i++) {
    socket.send(`during the drain ${i}`);
    assert.equal(await socket.next(), `during the drain ${i}`);
    // The drain lasts while the socket is open: a generation stopped early would show here.
    await sleep(300);
  }
  assert.ok(old.pid !== null && isAlive(old.pid), 'the old generation was stopped while its WebSocket was open');
  assert.equal((await daemon.service()).generations.find((generation) => generation.id === old.id)?.state, 'draining');

  const closedAt = Date.now();
  await socket.close();
  const closed = await socket.closed;
  assert.equal(closed.closeFrame, true, 'the connection ended without the app answering the close frame');
  const answer = await within(redeploying, 10_000, 'the end of the deploy after the WebSocket closed');
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  const stoppingAt = await daemon.waitForLogTime(new RegExp(`default#${old.id} stopping`));
  assert.ok(stoppingAt >= closedAt, `generation #${old.id} was stopped ${closedAt - stoppingAt} ms before its WebSocket closed`);
  assert.doesNotMatch(daemon.log(), new RegExp(`default#${old.id} drained .*cut=`), 'the drain cut the WebSocket');
});

testEachEngine('a WebSocket still open at drainTimeout is closed then, not before', { timeout: 60_000 }, async (t, engine) => {
  const { daemon } = await startAppDaemon(t, { name: 'websocket-timeout', engine, config: { drainTimeout: '2s' } });
  const old = await daemon.waitForActive();
  const socket = await openWebSocket(daemon.proxyPort, '/chat');
  const redeploying = daemon.redeploy();
  const drainingAt = await daemon.waitForLogTime(new RegExp(`default#${old.id} draining`));
  socket.send('still here');
  assert.equal(await socket.next(), 'still here');
  const closed = await within(socket.closed, 6000, 'the close of the WebSocket after drainTimeout');
  const openFor = closed.at - drainingAt;
  assert.ok(openFor >= 1800, `the WebSocket was closed ${openFor} ms after the drain began, before drainTimeout (2 s)`);
  const answer = await redeploying;
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
});

testEachEngine('an SSE stream open across a deploy keeps receiving events from the old generation until it ends', { timeout: 60_000 }, async (t, engine) => {
  const { daemon } = await startAppDaemon(t, { name: 'sse-drain', engine, config: { drainTimeout: '20s' } });
  const old = await daemon.waitForActive();
  const stream = await openEventStream(daemon.proxyPort, '/events?ms=4000');
  assert.equal(stream.status, 200);
  assert.equal(stream.headers['x-generation'], String(old.id));
  await waitFor(() => stream.events.length >= 3, { timeout: 5000, what: 'the first events of the stream' });

  const redeploying = daemon.redeploy();
  const next = await daemon.waitForActive({ after: old.id });
  const switchedAt = Date.now();
  const fresh = await request(daemon.proxyPort, '/');
  assert.equal(header(fresh, 'x-generation'), String(next.id));

  const ended = await within(stream.ended, 10_000, 'the end of the SSE stream');
  const answer = await redeploying;
  const answeredAt = Date.now();
  assert.equal(ended.how, 'end', 'the SSE stream was cut instead of ending');
  assert.ok(stream.events.length >= 15, `only ${stream.events.length} events arrived of the ~20 sent in 4 s`);
  assert.ok(stream.events.filter((event) => event.at > switchedAt).length >= 5, 'no events arrived after the switch');
  for (const event of stream.events) assert.equal((JSON.parse(event.data) as { generation: string }).generation, String(old.id));
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  assert.ok(answeredAt >= ended.at, 'the deploy ended before the SSE stream it was draining');
});

testEachEngine('an SSE stream longer than drainTimeout keeps receiving events until drainTimeout and is then closed', { timeout: 60_000 }, async (t, engine) => {
  const { daemon } = await startAppDaemon(t, { name: 'sse-timeout', engine, config: { drainTimeout: '2s' } });
  const old = await daemon.waitForActive();
  const stream = await openEventStream(daemon.proxyPort, '/events?ms=30000');
  await waitFor(() => stream.events.length >= 2, { timeout: 5000, what: 'the first events of the stream' });
  const redeploying = daemon.redeploy();
  const drainingAt = await daemon.waitForLogTime(new RegExp(`default#${old.id} draining`));
  const ended = await within(stream.ended, 8000, 'the close of the SSE stream after drainTimeout');
  const openFor = ended.at - drainingAt;
  const lastEvent = stream.events.at(-1)?.at ?? 0;
  assert.ok(openFor >= 1800, `the stream was closed ${openFor} ms after the drain began, before drainTimeout (2 s)`);
  assert.ok(lastEvent - drainingAt >= 1500, 'events stopped coming long before drainTimeout');
  assert.equal(ended.how, 'aborted', 'a stream cut at drainTimeout looked like a complete one');
  const answer = await redeploying;
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
});
