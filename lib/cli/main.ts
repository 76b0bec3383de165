import { RainbowError, isRainbowError } from '../errors.js';
import { didYouMean } from '../suggest.js';
import { help, helpText } from './help.js';
import { deploy } from './deploy.js';
import { list } from './list.js';
import { redeploy } from './redeploy.js';
import { remove } from './remove.js';
import { rollback } from './rollback.js';
import { run } from './run.js';
import { pause, resume, start, stop } from './service-mode.js';
import { status } from './status.js';
import { upgrade } from './upgrade.js';
import { version } from './version.js';

const commands: Record<string, (args: string[]) => Promise<void>> = {
  run,
  redeploy,
  deploy,
  remove,
  list,
  status,
  pause,
  resume,
  stop,
  start,
  rollback,
  upgrade,
  help,
};

export async function main(argv: string[]): Promise<void> {
  const [first, ...rest] = argv;
  if (first === '--help' || first === '-h') return void process.stdout.write(helpText());
  if (first === '--version' || first === '-v') return void process.stdout.write(`${version}\n`);
  if (first === undefined || first.startsWith('-')) return run(argv);
  const command = commands[first];
  if (!command) throw new RainbowError('USAGE', `unknown command "${first}"${didYouMean(first, Object.keys(commands))} (commands: ${Object.keys(commands).join(', ')}; see rainbowd help)`);
  if (rest.includes('--help') || rest.includes('-h')) return void process.stdout.write(helpText(first));
  return command(rest);
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

