/**
 * `dino train` as a process meets the world: SIGTERM (what `timeout`, docker and SLURM send) saves a checkpoint as
 * Ctrl-C does; a run that cannot start leaves no folder; an existing run is refused before anything compiles;
 * main_dino.py's --saveckp_freq, --use_bn_in_head, --dist_url, --local_rank and --optimizer.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { readCheckpointMeta } from '../../runtime/dino/checkpoint.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'dino-train-run-'));
test.after(() => fs.rmSync(DIR, { recursive: true, force: true }));

interface Result { code: number | null; stdout: string; stderr: string }

function start(args: readonly string[]): { child: ChildProcess; done: Promise<Result> } {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/dino.mjs'), ...args], { cwd: DIR, env: { ...process.env, NO_COLOR: '1' } });
  let stdout = '', stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d));
  child.stderr!.on('data', (d: Buffer) => (stderr += d));
  const done = new Promise<Result>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  return { child, done };
}
const dino = (...args: string[]) => start(args).done;

const TINY = [
  '--preset', 'fmnist-tiny6', '--batch', '8', '--local-crops', '1', '--threads', '1',
  ...['backbone.embedDim=32', 'backbone.depth=1', 'backbone.numHeads=2', 'backbone.mlpRatio=2', 'head.outDim=32', 'head.hiddenDim=32', 'head.bottleneckDim=8', 'freezeLastLayerSteps=1']
    .flatMap((s) => ['--set', s]),
];
const metricLines = (dir: string) => {
  const file = path.join(dir, 'metrics.jsonl');
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).length : 0;
};

test('SIGTERM finishes the step, saves a checkpoint and prints the resume command (exit 143)', async () => {
  const out = path.join(DIR, 'term');
  const { child, done } = start(['train', ...TINY, '--steps', '500', '--out', out]);
  for (let waited = 0; metricLines(out) < 2 && waited < 120_000; waited += 50) await new Promise((r) => setTimeout(r, 50));
  child.kill('SIGTERM');
  const r = await done;
  assert.is(r.code, 143, r.stderr);
  assert.match(r.stderr, /SIGTERM: finishing this step and saving a checkpoint/);
  const stoppedAt = Number(/interrupted after (\d+) steps/.exec(r.stdout)?.[1]);
  assert.ok(stoppedAt >= 2 && stoppedAt < 500, r.stdout);
  assert.match(r.stdout, new RegExp(`resume with: npx dino train --resume ${out}`));
  assert.is(readCheckpointMeta(path.join(out, 'checkpoint.safetensors')).step, stoppedAt);
  assert.is(metricLines(out), stoppedAt);
});

test('an existing run folder is refused before the step is compiled', async () => {
  const out = path.join(DIR, 'term'); // trained above
  // 3 heads do not divide 32 channels: had the step been compiled, that would be the error.
  const r = await dino('train', ...TINY, '--set', 'backbone.numHeads=3', '--steps', '2', '--out', out);
  assert.is(r.code, 1, r.stderr);
  assert.match(r.stderr, /checkpoint\.safetensors exists: continue that run with dino train --resume/);
  assert.not.match(r.stderr, /compiled|invalid/);
});

test('--ep cuda on a machine without it fails leaving no run folder', async () => {
  const out = path.join(DIR, 'cuda');
  const r = await dino('train', ...TINY, '--steps', '2', '--ep', 'cuda', '--out', out);
  if (r.code === 0) return; // a machine with CUDA trains; nothing to check here
  assert.match(r.stderr, /cuda/i);
  assert.not.ok(fs.existsSync(out), `${out} left behind:\n${r.stderr}`);
});

test('main_dino.py flags: --saveckp_freq (epochs), --use_bn_in_head; --dist_url, --local_rank and --optimizer sgd refused naming why', async () => {
  // 16 grayscale 28 px images in 2 classes: 2 steps per epoch at batch 8.
  const data = path.join(DIR, 'images');
  for (const [c, shade] of [['a', 40], ['b', 200]] as const) {
    fs.mkdirSync(path.join(data, c), { recursive: true });
    for (let i = 0; i < 8; i++) {
      await sharp({ create: { width: 28, height: 28, channels: 3, background: { r: shade + i, g: shade + i, b: shade + i } } }).grayscale().png().toFile(path.join(data, c, `${i}.png`));
    }
  }
  const out = path.join(DIR, 'epochs');
  const r = await dino('train', ...TINY, '--data', data, '--epochs', '2', '--saveckp_freq', '1', '--use_bn_in_head', 'true', '--out', out);
  assert.is(r.code, 0, r.stderr);
  const meta = readCheckpointMeta(path.join(out, 'checkpoint.safetensors'));
  assert.is(meta.step, 4);
  assert.is(meta.config.head.useBn, true);
  const both = await dino('train', ...TINY, '--data', data, '--epochs', '2', '--saveckp_freq', '1', '--checkpoint-every', '2', '--out', path.join(DIR, 'both'));
  assert.is(both.code, 2);
  assert.match(both.stderr, /--saveckp-freq \(epochs\) and --checkpoint-every \(steps\) both set how often to save: give one/);
  for (const flag of [['--dist_url', 'env://'], ['--local_rank', '0']]) {
    const d = await dino('train', ...TINY, ...flag, '--out', path.join(DIR, 'dist'));
    assert.is(d.code, 2);
    assert.match(d.stderr, /torch.distributed flag; here several processes are launched by mpirun -np N \(or srun\) and learn their rank from the MPI library: leave it out/);
  }
  const sgd = await dino('train', ...TINY, '--optimizer', 'sgd', '--out', path.join(DIR, 'dist'));
  assert.is(sgd.code, 2);
  assert.match(sgd.stderr, /--optimizer sgd: the training step is compiled with AdamW/);
  assert.not.ok(fs.existsSync(path.join(DIR, 'dist')));
});

test.run();
