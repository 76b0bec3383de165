import { access, constants } from 'node:fs/promises';
import path from 'node:path';

// nginx and haproxy live in /usr/sbin, which a non-root PATH often lacks.
const extraDirectories = ['/usr/sbin', '/sbin', '/usr/local/sbin'];

/** The path of a program the tests or the benchmark drive, or undefined when it is not installed. */
export async function findExecutable(name: string): Promise<string | undefined> {
  const directories = [...(process.env.PATH ?? '').split(path.delimiter), ...extraDirectories];
  for (const directory of directories.filter(Boolean)) {
    const candidate = path.join(directory, name);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}
