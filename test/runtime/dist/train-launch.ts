/**
 * `dino train` as a process, one or several (under mpirun), for the data-parallel training tests: the tiny config
 * of test/cli/train-run.test.ts (one ViT block with stochastic depth, K = 32, one local crop), and the comparison
 * of two checkpoints' whole state.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as assert from 'uvu/assert';
import { loadCheckpoint } from '../../../runtime/dino/checkpoint.ts';
import { mpirunEnv } from './mpi-launch.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const DINO = path.join(ROOT, 'bin/dino.mjs');

export const TINY = [
  '--preset', 'fmnist-tiny6', '--local-crops', '1', '--threads', '1', '--num-workers', '1',
  ...['backbone.embedDim=32', 'backbone.depth=1', 'backbone.numHeads=2', 'backbone.mlpRatio=2', 'head.outDim=32', 'head.hiddenDim=32', 'head.bottleneckDim=8', 'freezeLastLayerSteps=1']
    .flatMap((s) => ['--set', s]),
];

export interface Run {
  readonly child: ChildProcess;
  readonly done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

/** `dino train ...args` in `cwd`: one process (ranks 0), or `mpirun --oversubscribe -np <ranks>`; `tag` marks the ranks' environment. */
export function dinoTrain(ranks: number, cwd: string, args: readonly string[], tag = ''): Run {
  const env = { ...(ranks > 0 ? mpirunEnv() : process.env), NO_COLOR: '1', DINO_TEST_TAG: tag };
  const argv = ranks > 0 ? ['--oversubscribe', '-np', String(ranks), process.execPath, DINO, 'train', ...args] : [DINO, 'train', ...args];
  const child = spawn(ranks > 0 ? 'mpirun' : process.execPath, argv, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '', stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { child, done };
}

/**
 * Largest |a - b| / (|b| + floor) over the checkpoints' tensors (the same names), as test/runtime/dist/dino-step-split.test.ts
 * measures it: second moments against their own scale, the attention key bias (an exactly zero gradient, which Adam
 * turns into steps of size lr from rounding noise on any road) left out.
 */
export function stateDifference(gotFile: string, wantFile: string): { worst: number; where: string; identical: boolean } {
  const got = loadCheckpoint(gotFile).tensors, want = loadCheckpoint(wantFile).tensors;
  assert.equal([...got.keys()].sort(), [...want.keys()].sort(), 'state tensor names differ');
  let worst = 0, where = '', identical = true;
  for (const [name, wt] of want) {
    const w = wt.data as Float32Array, g = got.get(name)!.data as Float32Array;
    assert.is(g.length, w.length, `${name}: length`);
    if (!Buffer.from(g.buffer, g.byteOffset, g.byteLength).equals(Buffer.from(w.buffer, w.byteOffset, w.byteLength))) identical = false;
    const floor = name.startsWith('optim.v.') ? Math.max(...w.map(Math.abs)) : 1e-3;
    const keyBias = name.endsWith('attn.qkv.bias') ? [w.length / 3, (2 * w.length) / 3] : [0, 0];
    for (let i = 0; i < w.length; i++) {
      if (i >= keyBias[0]! && i < keyBias[1]!) continue;
      const err = Math.abs(g[i]! - w[i]!) / (Math.abs(w[i]!) + floor);
      if (!(err <= worst)) [worst, where] = [err, `${name}[${i}]: ${g[i]} vs ${w[i]}`];
    }
  }
  return { worst, where, identical };
}
