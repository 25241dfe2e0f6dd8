/**
 * Builds the WebAssembly augmentation kernels: runtime/data/wasm/augment.c -> runtime/data/wasm/augment.wasm, with
 * clang's wasm32 target (SIMD128) and wasm-ld, no libc. The .wasm is committed, so installing or testing the package
 * needs no compiler; run this after changing the C, then the fidelity tests
 * (test/runtime/data/augment-fidelity.test.ts), which check the kernels' bytes against Pillow's.
 *
 *   node --import tsx tools/build-wasm.ts [--check]
 *
 * Needs `clang` and `wasm-ld` (Debian: `apt-get install clang lld`). `--check` builds into a temporary file and
 * exits 1 when it differs from the committed .wasm (the same compiler version gives the same bytes).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const WASM_SOURCE = path.join(root, 'runtime/data/wasm/augment.c');
export const WASM_OUTPUT = path.join(root, 'runtime/data/wasm/augment.wasm');

/** The compiler command for `out`; the flags are part of what the committed bytes depend on. */
export function clangArgs(out: string): string[] {
  return [
    '--target=wasm32', '-O3', '-msimd128', '-ffreestanding', '-nostdlib', '-Wall', '-Wextra', '-Werror',
    // No entry point; the C stack and __heap_base (where the JS side's allocations start) exported; memory grows.
    '-Wl,--no-entry', '-Wl,--export=__heap_base', '-Wl,--initial-memory=1048576', '-Wl,--strip-all',
    '-o', out, WASM_SOURCE,
  ];
}

/** Builds into `out`; throws with the compiler's message when clang is missing or fails. */
export function buildWasm(out: string): void {
  const result = spawnSync('clang', clangArgs(out), { encoding: 'utf8' });
  if (result.error) throw new Error(`clang not found (${result.error.message}): install clang and lld (Debian: apt-get install clang lld)`);
  if (result.status !== 0) throw new Error(`clang failed:\n${result.stderr}`);
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (process.argv.includes('--check')) {
    const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'dino-wasm-')), 'augment.wasm');
    buildWasm(out);
    const same = fs.readFileSync(out).equals(fs.readFileSync(WASM_OUTPUT));
    console.log(same ? `${WASM_OUTPUT} is up to date` : `${WASM_OUTPUT} differs from a build of ${WASM_SOURCE}: run node --import tsx tools/build-wasm.ts`);
    process.exit(same ? 0 : 1);
  }
  buildWasm(WASM_OUTPUT);
  console.log(`wrote ${WASM_OUTPUT} (${fs.statSync(WASM_OUTPUT).size} bytes)`);
}
