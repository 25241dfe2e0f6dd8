#!/usr/bin/env node
// `npx dino ...` entry. libuv's thread pool runs every image decode of the process (sharp) and starts with
// UV_THREADPOOL_SIZE threads, 4 unless set, read once when the pool first starts. An ES module entry starts too late
// (loading ES modules already uses the pool); this CommonJS one sets it first: one thread per core, at least 4,
// unless the environment says otherwise. Then bin/dino.mjs registers tsx and runs the CLI.
'use strict';
if (process.env.UV_THREADPOOL_SIZE === undefined) {
  process.env.UV_THREADPOOL_SIZE = String(Math.max(4, require('node:os').availableParallelism()));
}
import('./dino.mjs').catch((error) => {
  console.error(error);
  process.exit(1);
});
