// What a user would run instead of rainbowd, configured alike: as many nginx workers and
// haproxy threads as rainbowd has proxy workers by default on this machine, keep-alive to
// clients and to the app, the same timeouts, X-Forwarded-* headers set (rainbowd sets them),
// no access log (rainbowd has none).
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import getPort from 'get-port';
import { defaultWorkers } from '../lib/config.js';
import { waitForHttp } from './http.js';
import { stopIfFails, type Launched, type ProcessRegistry } from './processes.js';

export interface Peer {
  name: 'nginx' | 'haproxy' | 'undici-minimal';
  url: string;
  process: Launched;
}

// nginx keeps at most this many idle connections to the app (issue 4: "keepalive 64").
const UPSTREAM_KEEPALIVE = 64;
// Below the Node apps' 5 s keep-alive timeout, as rainbowd's agent (4 s): the proxy closes an
// idle upstream connection before the app does, so none is reused just as the app closes it.
const UPSTREAM_IDLE_SECONDS = 4;
const CLIENT_IDLE_SECONDS = 65;
/** nginx workers and haproxy threads: rainbowd's default proxy workers here (at least 1). */
export const PEER_WORKERS = Math.max(1, defaultWorkers());

export async function startNginx(registry: ProcessRegistry, executable: string, directory: string, appPort: number): Promise<Peer> {
  await mkdir(directory, { recursive: true });
  const port = await getPort({ host: '127.0.0.1' });
  const inside = (name: string) => path.join(directory, name);
  const config = `daemon off;
worker_processes ${PEER_WORKERS};
pid ${inside('nginx.pid')};
error_log ${inside('error.log')} warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${inside('client_body')};
  proxy_temp_path ${inside('proxy')};
  fastcgi_temp_path ${inside('fastcgi')};
  uwsgi_temp_path ${inside('uwsgi')};
  scgi_temp_path ${inside('scgi')};
  keepalive_timeout ${CLIENT_IDLE_SECONDS}s;
  # Node and haproxy put no limit on requests per connection.
  keepalive_requests 1000000;
  upstream app {
    server 127.0.0.1:${appPort};
    keepalive ${UPSTREAM_KEEPALIVE};
    keepalive_timeout ${UPSTREAM_IDLE_SECONDS}s;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
      proxy_connect_timeout 5s;
      proxy_send_timeout 60s;
      proxy_read_timeout 60s;
    }
  }
}
`;
  await writeFile(inside('nginx.conf'), config);
  // -e: the error log before the config is read (else /var/log/nginx, often not writable).
  const launched = registry.launch('nginx', executable, ['-c', inside('nginx.conf'), '-p', directory, '-e', inside('error.log')], {
    cwd: directory,
    logFile: inside('output.log'),
  });
  const url = `http://127.0.0.1:${port}/`;
  await stopIfFails(launched, () => waitForHttp(url, 'nginx', [launched]));
  return { name: 'nginx', url, process: launched };
}

export async function startHaproxy(registry: ProcessRegistry, executable: string, directory: string, appPort: number): Promise<Peer> {
  await mkdir(directory, { recursive: true });
  const port = await getPort({ host: '127.0.0.1' });
  const inside = (name: string) => path.join(directory, name);
  const config = `global
  nbthread ${PEER_WORKERS}
  maxconn 8192
  pidfile ${inside('haproxy.pid')}

defaults
  mode http
  maxconn 8192
  option http-keep-alive
  option forwardfor
  # Reuse idle connections to the app for any client, like nginx's upstream keepalive pool.
  http-reuse always
  retry-on conn-failure empty-response
  timeout connect 5s
  timeout client ${CLIENT_IDLE_SECONDS}s
  timeout http-keep-alive ${CLIENT_IDLE_SECONDS}s
  timeout http-request 60s
  timeout server 60s

frontend bench
  bind 127.0.0.1:${port}
  default_backend app

backend app
  server app 127.0.0.1:${appPort} pool-purge-delay ${UPSTREAM_IDLE_SECONDS}s
`;
  await writeFile(inside('haproxy.cfg'), config);
  // -db: stay in the foreground, in the process group the benchmark stops.
  const launched = registry.launch('haproxy', executable, ['-db', '-f', inside('haproxy.cfg')], {
    cwd: directory,
    logFile: inside('output.log'),
  });
  const url = `http://127.0.0.1:${port}/`;
  await stopIfFails(launched, () => waitForHttp(url, 'haproxy', [launched]));
  return { name: 'haproxy', url, process: launched };
}

/** Issue 12's prototype (undici-minimal.mjs): the floor for rainbowd's node engine in one process. */
export async function startUndiciMinimal(registry: ProcessRegistry, root: string, directory: string, appPort: number): Promise<Peer> {
  await mkdir(directory, { recursive: true });
  const port = await getPort({ host: '127.0.0.1' });
  const launched = registry.launch('undici-minimal', process.execPath, [path.join(root, 'bench', 'undici-minimal.mjs'), '--port', String(port), '--app-port', String(appPort)], {
    cwd: directory,
    logFile: path.join(directory, 'output.log'),
  });
  const url = `http://127.0.0.1:${port}/`;
  await stopIfFails(launched, () => waitForHttp(url, 'undici-minimal', [launched]));
  return { name: 'undici-minimal', url, process: launched };
}
