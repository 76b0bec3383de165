import { spawn, type ChildProcess } from 'node:child_process';
import { Socket } from 'node:net';
import { AppGroup, type ExitInfo } from './app-group.js';
import { GENERATION_MARKER, newGenerationMarker } from './marked-processes.js';
import { launchCommand, type LaunchValues } from './template.js';

// One app this rainbowd launched: the `sh -c RUN` wrapper in its own process group, and its
// output. Stopping it is AppGroup's. node:child_process rather than execa, which took 4–5 MB
// of the daemon's RSS and about half of its module loading for what this needs: a detached
// child, its output, its exit.

export interface SpawnOptions extends LaunchValues {
  run: string;
  service: string;
  cwd: string;
  env: Record<string, string>;
  onOutput: (line: string) => void;
}

export class AppProcess extends AppGroup {
  private readonly subprocess: ChildProcess;
  exitInfo: ExitInfo | null = null;
  readonly exited: Promise<ExitInfo>;

  constructor(options: SpawnOptions) {
    const { file, args } = launchCommand(options.run, options);
    const marker = newGenerationMarker(options.service, options.generation);
    const subprocess = spawn(file, args, {
      cwd: options.cwd,
      env: {
        ...process.env,
        ...options.env,
        PORT: String(options.port),
        RAINBOWD_SERVICE: options.service,
        RAINBOWD_GENERATION: String(options.generation),
        [GENERATION_MARKER]: marker,
      },
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    super(subprocess.pid ?? -1, marker, options.pidfile);
    this.subprocess = subprocess;
    for (const stream of [subprocess.stdout!, subprocess.stderr!]) this.readOutput(stream, options.onOutput);
    let spawnFailed = false;
    this.exited = new Promise((resolve) => {
      // A spawn that failed (ENOENT) closes too, with no exit status of an app.
      subprocess.once('error', () => (spawnFailed = true));
      // Once its output has ended too: the last lines are read before the exit is reported.
      subprocess.once('close', (code, signal) => {
        this.exitInfo = spawnFailed ? { code: null, signal: null } : { code, signal };
        resolve(this.exitInfo);
      });
    });
  }

  outputStreams(): Socket[] {
    return [this.subprocess.stdout, this.subprocess.stderr].filter((stream): stream is Socket => stream instanceof Socket);
  }

  describeExit(): string {
    const info = this.exitInfo;
    if (!info) return 'is running';
    return info.signal ? `was killed by ${info.signal}` : `exited with code ${info.code}`;
  }
}
