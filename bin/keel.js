#!/usr/bin/env node
'use strict';
// Runs the compiled CLI. `npm run setup` (or `npm run build`) compiles it into dist/.
const path = require('node:path');
const fs = require('node:fs');
const entry = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
if (!fs.existsSync(entry)) {
  console.error('keel: not built yet. Fix: npm run setup (or npm run build)');
  process.exit(2);
}
require(entry).main();
