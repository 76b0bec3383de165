import { parseArgs, type ParseArgsConfig } from 'node:util';
import { usageError } from '../errors.js';
import { didYouMean } from '../suggest.js';

// node:util's parseArgs, with complaints written for people: which command, which flag,
// the flag that was probably meant; and `--workers -1` read as a value, not as a flag.

type Options = NonNullable<ParseArgsConfig['options']>;

export function parseCommandLine<T extends Options>(command: string, args: string[], options: T) {
  try {
    return parseArgs({ args: joinDashValues(args, options), options, strict: true, allowPositionals: true });
  } catch (error) {
    throw explain(error, command, options);
  }
}

/** `status extra` is a mistake, not something to ignore. */
export function expectNoArguments(command: string, positionals: string[]): void {
  if (positionals.length > 0) throw usageError(`${command} takes no arguments, got ${positionals.map((word) => JSON.stringify(word)).join(' ')}`);
}

// parseArgs takes `--workers -1` for a flag without its value ("ambiguous"); a value that
// starts with "-" and is no flag of the command is what the user meant.
function joinDashValues(args: string[], options: Options): string[] {
  const joined: string[] = [];
  for (let index = 0; index < args.length; index++) {
    const arg = args[index]!;
    const next = args[index + 1];
    const option = arg.startsWith('--') && !arg.includes('=') ? options[arg.slice(2)] : undefined;
    if (option?.type === 'string' && next !== undefined && next.startsWith('-') && next !== '--' && !isFlag(next, options)) {
      joined.push(`${arg}=${next}`);
      index++;
    } else {
      joined.push(arg);
    }
  }
  return joined;
}

function isFlag(word: string, options: Options): boolean {
  const name = word.replace(/^-+/, '').split('=')[0]!;
  return word.startsWith('--') ? name in options : Object.values(options).some((option) => option.short === name);
}

function explain(error: unknown, command: string, options: Options): unknown {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code !== 'string' || !code.startsWith('ERR_PARSE_ARGS')) return error;
  const message = (error as Error).message;
  const unknown = /^Unknown option '(-{1,2})([^']+)'/.exec(message);
  if (unknown) {
    const flag = `${unknown[1]}${unknown[2]}`;
    const suggestion = didYouMean(unknown[2]!, Object.keys(options), (name) => `--${name}`);
    return usageError(`unknown option ${flag} for ${command}${suggestion}`);
  }
  return usageError(`${command}: ${message.split('\n')[0]!.replace(/\.$/, '')}`);
}
