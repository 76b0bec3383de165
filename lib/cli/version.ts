import { readFileSync } from 'node:fs';

// dist/lib/cli/version.js -> the package.json three levels up.
export const version: string = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
