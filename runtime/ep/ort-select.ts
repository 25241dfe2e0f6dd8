/**
 * Which onnxruntime-node this process loads. Two builds cannot share a process (both native bindings load a
 * library named `libonnxruntime.so.1`, and the second gets the first's), so the choice is made once, before
 * `runtime/backend.ts` is imported: `DINO_EP=cuda` in the environment selects the build that `dino setup cuda`
 * installed, when it is there; anything else loads the project's own dependency. The CLI sets `DINO_EP` from `--ep`.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { PROVIDER_LIBS, cudaDir, cudaLayout } from './cuda-setup.ts';

/** The `--ep` choices, from the EP records (here too, for callers that choose a build before loading one). */
export { EXECUTION_PROVIDERS, type ExecutionProvider } from './records.ts';

export interface OrtChoice {
  /** What `require` loads: a package name or an absolute package folder. */
  readonly module: string;
  /** `default`: the project's dependency; `cuda-setup`: the build in the CUDA folder. */
  readonly kind: 'default' | 'cuda-setup';
}

/** The onnxruntime-node to load for `env` (see the module comment). */
export function chooseOrt(env: NodeJS.ProcessEnv = process.env, root: string = process.cwd()): OrtChoice {
  if (env['DINO_EP'] === 'cuda') {
    const l = cudaLayout(cudaDir(root, env));
    if (existsSync(join(l.ortNativeDir, PROVIDER_LIBS[0])) && existsSync(join(l.ortPackage, 'package.json'))) return { module: l.ortPackage, kind: 'cuda-setup' };
  }
  return { module: 'onnxruntime-node', kind: 'default' };
}

/** The `--ep` value in a command line (`--ep X` or `--ep=X`), or undefined. */
export function epFromArgv(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--ep') return argv[i + 1];
    if (argv[i]!.startsWith('--ep=')) return argv[i]!.slice('--ep='.length);
  }
  return undefined;
}

/** Called by the CLI before anything loads ORT: `--ep cuda` selects the CUDA build (unless DINO_EP is set already). */
export function preselectOrt(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): void {
  const ep = epFromArgv(argv);
  if (ep !== undefined && env['DINO_EP'] === undefined) env['DINO_EP'] = ep;
}
