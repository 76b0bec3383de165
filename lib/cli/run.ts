import path from 'node:path';
import { describeSearchPlaces, findConfigFile, loadConfig } from '../config.js';
import { Daemon } from '../daemon.js';
import { RainbowError, messageOf } from '../errors.js';
import { Predecessor } from '../handover.js';
import { Logger } from '../log.js';
import { parseRunArguments } from './run-options.js';
import { version } from './version.js';

export async function run(args: string[]): Promise<void> {
  // Started by `rainbowd upgrade`: why we could not start is the upgrade's answer.
  const predecessor = Predecessor.fromEnvironment();
  try {
    await start(args, predecessor);
  } catch (error) {
    await predecessor?.failed(messageOf(error));
    throw error;
  }
}

async function start(args: string[], predecessor: Predecessor | null): Promise<void> {
  const { configFile, overrides, pidfile } = parseRunArguments(args, process.env);
  const file = configFile ? path.resolve(configFile) : await findConfigFile(process.cwd());
  if (!file) {
    throw new RainbowError(
      'CONFIG_NOT_FOUND',
      `no config found in ${process.cwd()} (looked for ${describeSearchPlaces()}); create rainbow.conf.json with {"run": "..."} or pass --config FILE`,
    );
  }
  const config = await loadConfig(file, overrides);
  const daemon = new Daemon(config, overrides, new Logger(config.logFormat), version, { predecessor, pidfile: pidfile ?? null });
  await daemon.start();
}
