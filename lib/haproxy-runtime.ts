import net from 'node:net';

// A client of HAProxy's admin socket and master CLI: one command (or a `;` batch) per
// connection, its whole answer; and the parsing of the answers rainbowd reads (`show stat`, `show sess`, `show proc`).

const COMMAND_TIMEOUT_MS = 5000;

/** Sends `command` and resolves to HAProxy's answer. */
export function runtimeCommand(socketPath: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let answer = '';
    const socket = net.connect(socketPath, () => {
      // The master CLI answers only once the command is half-closed.
      socket.end(`${command}\n`);
    });
    socket.setEncoding('utf8');
    socket.setTimeout(COMMAND_TIMEOUT_MS, () => socket.destroy(new Error(`HAProxy did not answer "${command}" within ${COMMAND_TIMEOUT_MS / 1000} s`)));
    socket.on('data', (chunk: string) => (answer += chunk));
    socket.on('error', reject);
    socket.on('close', (hadError) => {
      if (!hadError) resolve(answer);
    });
  });
}

/**
 * Sends `commands` in one connection (HAProxy runs them in order, each whatever the others
 * answered) and resolves to their answers, `null` where HAProxy gave none.
 */
export async function runtimeCommands(socketPath: string, commands: string[]): Promise<Array<string | null>> {
  return splitAnswers(await runtimeCommand(socketPath, commands.join('; ')), commands.length);
}

/** The answers of a `;` batch: each ends with an empty line, so an empty answer is the empty line alone. */
export function splitAnswers(text: string, count: number): Array<string | null> {
  const answers: Array<string | null> = [];
  let lines: string[] = [];
  for (const line of text.split('\n')) {
    if (answers.length === count) break;
    if (line !== '') lines.push(line);
    else {
      answers.push(lines.map((answerLine) => `${answerLine}\n`).join(''));
      lines = [];
    }
  }
  while (answers.length < count) answers.push(null);
  return answers;
}

/** Requests in flight per server (`BACKEND/SERVER`), from `show stat`: current sessions plus those queued. */
export function parseInFlight(csv: string): Map<string, number> {
  const counts = new Map<string, number>();
  const lines = csv.split('\n');
  const header = lines[0]?.replace(/^# /, '').split(',') ?? [];
  const [proxy, server, queued, current] = ['pxname', 'svname', 'qcur', 'scur'].map((name) => header.indexOf(name));
  if ([proxy, server, queued, current].some((index) => index === -1)) return counts;
  for (const line of lines.slice(1)) {
    const fields = line.split(',');
    const name = fields[server!];
    if (name === undefined || name === 'FRONTEND' || name === 'BACKEND') continue;
    counts.set(`${fields[proxy!]}/${name}`, Number(fields[queued!] || 0) + Number(fields[current!] || 0));
  }
  return counts;
}

/**
 * The sessions on `backend/server` in `show sess`, by the pointer `shutdown session` takes:
 * an old worker refuses `shutdown sessions server` (its proxies are disabled), not this.
 */
export function sessionsOn(showSess: string, backend: string, server: string): string[] {
  const marker = ` be=${backend} srv=${server} `;
  return showSess.split('\n').flatMap((line) => (line.includes(marker) ? [line.slice(0, line.indexOf(':'))] : []));
}

export interface Processes {
  master: number | null;
  /** Reloads the master has done, and how many of them failed. */
  reloads: number;
  failedReloads: number;
  workers: number[];
  /** Workers of an earlier config that still finish what they had. */
  oldWorkers: number[];
}

/** The master CLI's `show proc`. */
export function parseProcesses(text: string): Processes {
  const result: Processes = { master: null, reloads: 0, failedReloads: 0, workers: [], oldWorkers: [] };
  let section: 'workers' | 'oldWorkers' | null = null;
  for (const line of text.split('\n')) {
    if (line.startsWith('# workers')) section = 'workers';
    else if (line.startsWith('# old workers')) section = 'oldWorkers';
    else if (line.startsWith('#')) section = null;
    const master = /^(\d+)\s+master\s+(\d+)\s+\[failed: (\d+)\]/.exec(line);
    if (master) {
      result.master = Number(master[1]);
      result.reloads = Number(master[2]);
      result.failedReloads = Number(master[3]);
    }
    const worker = /^(\d+)\s+worker\s/.exec(line);
    if (worker && section) result[section].push(Number(worker[1]));
  }
  return result;
}
