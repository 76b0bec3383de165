import { Socket } from 'node:net';
import { execa, type ResultPromise } from 'execa';
import { AppGroup, type ExitInfo } from './app-group.js';
import { GENERATION_MARKER, newGenerationMarker } from './marked-processes.js';
import { launchCommand, type LaunchValues } from './template.js';

// One app this rainbowd launched: the `sh -c RUN` wrapper in its own process group, and its
// output. Stopping it is AppGroup's.

export interface SpawnOptions extends LaunchValues {
  run: string;
  service: string;
  cwd: string;
  env: Record<string, string>;
  onOutput: (line: string) => void;
}

type Subprocess = ResultPromise<{ detached: true; buffer: false; all: true; reject: false; stdin: 'ignore' }>;

export class AppProcess extends AppGroup {
  private readonly subprocess: Subprocess;
  exitInfo: ExitInfo | null = null;
  readonly exited: Promise<ExitInfo>;

  constructor(options: SpawnOptions) {
    const { file, args } = launchCommand(options.run, options);
    const marker = newGenerationMarker(options.service, options.generation);
    const subprocess = execa(file, args, {
      cwd: options.cwd,
      env: {
        ...options.env,
        PORT: String(options.port),
        RAINBOWD_SERVICE: options.service,
        RAINBOWD_GENERATION: String(options.generation),
        [GENERATION_MARKER]: marker,
      },
      detached: true,
      // execa's default buffering would kill a chatty long-running app at maxBuffer.
      buffer: false,
      all: true,
      reject: false,
      stdin: 'ignore',
    });
    super(subprocess.pid ?? -1, marker, options.pidfile);
    this.subprocess = subprocess;
    if (this.subprocess.all) this.readOutput(this.subprocess.all, options.onOutput);
    this.exited = this.subprocess.then((result) => {
      this.exitInfo = { code: result.exitCode ?? null, signal: result.signal ?? null };
      return this.exitInfo;
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
