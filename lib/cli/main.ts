import { RainbowError, isRainbowError } from '../errors.js';
import { didYouMean } from '../suggest.js';
import { version } from './version.js';

type Command = (args: string[]) => Promise<void>;

// A command's module is loaded when it runs: `rainbowd run` does not load the control API's
// client and formatting, and `rainbowd status` not the daemon (execa, undici, cosmiconfig...).
const commands: Record<string, () => Promise<Command>> = {
  run: async () => (await import('./run.js')).run,
  redeploy: async () => (await import('./redeploy.js')).redeploy,
  deploy: async () => (await import('./deploy.js')).deploy,
  remove: async () => (await import('./remove.js')).remove,
  list: async () => (await import('./list.js')).list,
  status: async () => (await import('./status.js')).status,
  pause: async () => (await import('./service-mode.js')).pause,
  resume: async () => (await import('./service-mode.js')).resume,
  stop: async () => (await import('./service-mode.js')).stop,
  start: async () => (await import('./service-mode.js')).start,
  rollback: async () => (await import('./rollback.js')).rollback,
  upgrade: async () => (await import('./upgrade.js')).upgrade,
  help: async () => (await import('./help.js')).help,
};

const helpText = async (command?: string) => (await import('./help.js')).helpText(command);

export async function main(argv: string[]): Promise<void> {
  const [first, ...rest] = argv;
  if (first === '--help' || first === '-h') return void process.stdout.write(await helpText());
  if (first === '--version' || first === '-v') return void process.stdout.write(`${version}\n`);
  if (first === undefined || first.startsWith('-')) return (await commands.run())(argv);
  // Own keys only: `rainbowd constructor` is not a command.
  const command = Object.hasOwn(commands, first) ? commands[first] : undefined;
  if (!command) throw new RainbowError('USAGE', `unknown command "${first}"${didYouMean(first, Object.keys(commands))} (commands: ${Object.keys(commands).join(', ')}; see rainbowd help)`);
  if (rest.includes('--help') || rest.includes('-h')) return void process.stdout.write(await helpText(first));
  return (await command())(rest);
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (isRainbowError(error)) {
    process.stderr.write(`rainbowd: ${error.message}\n`);
    process.exitCode = error.exitCode;
    return;
  }
  process.stderr.write(`rainbowd: internal error (please report it): ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exitCode = 1;
});

