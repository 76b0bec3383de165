#!/bin/sh
":" //; exec node --max-semi-space-size=4 "$0" "$@"
// Run as a program (`rainbowd`, `nohup rainbowd &`), the line above is shell: it re-runs this
// file under node with a small young generation, which keeps the daemon's memory under load
// about 20 MB lower at the same throughput (see bench/). Run as `node bin/rainbowd.js`, it is
// a JavaScript expression that does nothing.
import '../dist/lib/cli/main.js';
