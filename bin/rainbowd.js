#!/usr/bin/env node
import { existsSync } from 'node:fs';

const main = new URL('../dist/lib/cli/main.js', import.meta.url);
// In a git clone, dist/ exists only once built: say how, rather than Node's module-not-found trace.
if (!existsSync(main)) {
  console.error('rainbowd is not built in this checkout: run `npm install && npm run build` here first');
  process.exit(2);
}
await import(main.href);
