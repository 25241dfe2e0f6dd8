/**
 * The committed WebAssembly kernels (runtime/data/wasm/augment.wasm) are the build of their C source: rebuilt with
 * tools/build-wasm.ts and compared byte for byte, so a change to augment.c cannot ship without its .wasm. Needs
 * clang and wasm-ld (.ci/run installs them); skipped, with the reason printed, where they are absent.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildWasm, WASM_OUTPUT } from '../../tools/build-wasm.ts';

const clang = spawnSync('clang', ['--version'], { encoding: 'utf8' });
const wasmLd = spawnSync('wasm-ld', ['--version'], { encoding: 'utf8' });
if (clang.status !== 0 || wasmLd.status !== 0) {
  console.log('skipping the WebAssembly build check: clang or wasm-ld not installed (apt-get install clang lld)');
} else {
  test('runtime/data/wasm/augment.wasm is the build of augment.c (node --import tsx tools/build-wasm.ts)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dino-wasm-test-'));
    try {
      const out = path.join(dir, 'augment.wasm');
      buildWasm(out);
      assert.ok(fs.readFileSync(out).equals(fs.readFileSync(WASM_OUTPUT)), 'the committed .wasm differs from a fresh build: run node --import tsx tools/build-wasm.ts and commit it');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}

test.run();
