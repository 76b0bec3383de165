import { test, type TestContext, type TestOptions } from 'node:test';
import { ENGINES, type Engine } from '../../lib/config.js';
import { findExecutable } from './executables.js';

// Every data-path test runs once against each engine rainbowd has (the config key `engine`).
export { ENGINES, type Engine };

// The program an engine needs besides rainbowd, and how to install it.
const programs: Partial<Record<Engine, { name: string; install: string }>> = {
  haproxy: { name: 'haproxy', install: 'apt-get install haproxy' },
};

const missing = new Map<Engine, string>();
for (const engine of ENGINES) {
  const program = programs[engine];
  if (program !== undefined && (await findExecutable(program.name)) === undefined) missing.set(engine, `${program.name} is not installed (${program.install})`);
}

/** The `skip` of a test of `engine`: why it cannot run on this machine, or false. */
export function skipReason(engine: Engine): string | false {
  return missing.get(engine) ?? false;
}

export interface EngineTestOptions extends TestOptions {
  // The engines this test applies to, when a setting it tests belongs to some engines only.
  engines?: readonly Engine[];
}

/**
 * One test per engine, named `ENGINE: NAME`, the engine given to its body; a test of an engine
 * whose program is missing is skipped with the reason.
 */
export function testEachEngine(name: string, { engines = ENGINES, ...options }: EngineTestOptions, body: (t: TestContext, engine: Engine) => Promise<void>): void {
  for (const engine of ENGINES.filter((candidate) => engines.includes(candidate))) {
    test(`${engine}: ${name}`, { ...options, skip: skipReason(engine) || options.skip }, (t) => body(t, engine));
  }
}
