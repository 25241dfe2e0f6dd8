/**
 * Training on an image folder that is streamed (indexed, decoded per sample by the loader's workers): the
 * schedules follow the folder's own epoch, every metrics line says how long the step waited for data, Ctrl-C +
 * resume with 3 workers is bit-identical, and unreadable files stop the run (naming the file, the last checkpoint
 * kept) or are skipped and named.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import sharp from 'sharp';
import { type AnyTrainConfig as TrainConfig, applyOverrides } from '../../../runtime/dino/config.ts';
import { DataBoundMeter, train } from '../../../runtime/dino/train.ts';
import { RUN_FILES } from '../../../runtime/dino/run-folder.ts';
import { loadCheckpoint } from '../../../runtime/dino/checkpoint.ts';
import { newRunFromArgs } from '../../../cli/train.ts';
import { BadImageError } from '../../../runtime/data/decode.ts';
import { FolderIndex, indexImageFolder } from '../../../runtime/data/folder-index.ts';
import { epochPermutation } from '../../../runtime/data/loader.ts';

const dirs: string[] = [];
const tmp = () => { const d = mkdtempSync(join(tmpdir(), 'folder-train-')); dirs.push(d); return d; };
test.after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

// 300 small images of different sizes in 3 classes: at batch 32, one epoch is floor(300 / 32) = 9 steps.
const root = tmp();
for (let i = 0; i < 300; i++) {
  const width = 16 + (i % 13), height = 16 + ((i * 7) % 11);
  const pixels = Buffer.alloc(width * height * 3);
  const c = i % 3;
  for (let p = 0; p < pixels.length; p++) pixels[p] = (p % 3 === c ? 150 : 40) + ((p * 31 + i * 7) % 60);
  const file = join(root, `class${c}`, `${String(i).padStart(3, '0')}.${i % 4 ? 'png' : 'jpg'}`);
  await fs.mkdir(join(root, `class${c}`), { recursive: true });
  const image = sharp(pixels, { raw: { width, height, channels: 3 } });
  await (i % 4 ? image.png() : image.jpeg({ quality: 90 })).toFile(file);
}
const TINY = ['backbone.embedDim=32', 'backbone.depth=2', 'backbone.numHeads=2', 'head.outDim=64', 'head.hiddenDim=64', 'head.bottleneckDim=16', 'augment.blurSigma=[0.01,0.3]'];
const args = ['--arch', 'vit_tiny', '--patch-size', '8', '--image-size', '16', '--local-crops-number', '2', '--batch', '32', '--data', root, ...TINY.flatMap((s) => ['--set', s])];
const quiet = { progress: 'none', log: () => {}, threads: 1 } as const;
const metricsOf = (out: string) => readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);

let config: TrainConfig;

test('--arch with --steps on a 300-image folder: schedules scaled to its 9-step epoch; the last layer unfreezes after epoch 1', async () => {
  const r = await newRunFromArgs([...args, '--steps', '30']);
  config = r.config;
  assert.ok(r.dataset instanceof FolderIndex && r.dataset.train.count === 300, 'the folder is indexed, every image in train');
  assert.equal([config.steps, config.epochSteps, config.freezeLastLayerSteps, config.warmupTeacherTempSteps, config.warmupFraction], [30, 9, 9, 0, 1]);
  assert.not.ok('epochs' in config, 'the length is given in steps');
  const out = join(tmp(), 'run');
  await train({ config, out, dataset: r.dataset, numWorkers: 2, ...quiet });
  const metrics = metricsOf(out);
  assert.is(metrics.length, 30);
  assert.equal(metrics.map((m) => m['gate.last_layer']), [...Array(9).fill(0), ...Array(21).fill(1)]);
  assert.ok(metrics.every((m) => Number.isFinite(m['data_wait_ms']) && m['data_wait_ms']! >= 0), 'data_wait_ms on every line');
  assert.is((JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as TrainConfig).epochSteps, 9);
  assert.ok(existsSync(join(out, RUN_FILES.dataIndex)), 'the run records the files it trains on');
});

test('train() indexing the folder itself records the same index as a run handed the index', async () => {
  const short = { ...config, steps: 2 };
  const handed = join(tmp(), 'run'), own = join(tmp(), 'run');
  await train({ config: short, out: handed, dataset: await indexImageFolder(root), numWorkers: 1, ...quiet });
  await train({ config: short, out: own, numWorkers: 1, ...quiet });
  assert.is(readFileSync(join(own, RUN_FILES.dataIndex), 'utf8'), readFileSync(join(handed, RUN_FILES.dataIndex), 'utf8'));
  assert.equal(metricsOf(own).map((m) => m['loss']), metricsOf(handed).map((m) => m['loss']));
});

test('the progress line says data-bound when steps wait for images more than 10% of the time', () => {
  const bound = new DataBoundMeter();
  bound.add(60, 100);
  assert.match(bound.note(), 'data-bound: 60% waiting for images');
  const busy = new DataBoundMeter();
  for (let i = 0; i < 5; i++) busy.add(2, 100);
  assert.is(busy.note(), '');
});

test('--holdout F: that fraction of each class is recorded and not trained on; the epoch shrinks with it', async () => {
  const r = await newRunFromArgs([...args, '--steps', '30', '--holdout', '0.1']);
  assert.ok(r.dataset instanceof FolderIndex);
  assert.equal([r.config.holdout, r.dataset.train.count, r.dataset.test.count, r.config.epochSteps], [0.1, 270, 30, 8]);
});

test('Ctrl-C then resume with 3 workers == the run not stopped, bit for bit', async () => {
  const cfg = applyOverrides(config, ['steps=8']);
  const straight = join(tmp(), 'a'), stopped = join(tmp(), 'b');
  await train({ config: cfg, out: straight, numWorkers: 3, ...quiet });
  // progress 'lines' logs every step of an 8-step run: press Ctrl-C when step 3 is reported.
  const first = await train({
    config: cfg, out: stopped, numWorkers: 3, progress: 'lines', threads: 1,
    log: (line) => { if (line.startsWith('[') && line.includes(' 3/8 ')) process.emit('SIGINT'); },
  });
  process.removeAllListeners('SIGINT'); // the handler a second Ctrl-C would have used
  assert.ok(first.interrupted && first.steps === 3, `stopped after step 3: ${first.steps}`);
  await train({ config: cfg, out: stopped, resume: true, numWorkers: 3, ...quiet });
  const a = loadCheckpoint(join(straight, 'checkpoint.safetensors')), b = loadCheckpoint(join(stopped, 'checkpoint.safetensors'));
  assert.is(b.meta.step, 8);
  for (const [k, t] of a.tensors) {
    const x = t.data as Float32Array, y = b.tensors.get(k)!.data as Float32Array;
    assert.ok(Buffer.from(x.buffer, x.byteOffset, x.byteLength).equals(Buffer.from(y.buffer, y.byteOffset, y.byteLength)), `${k} differs after resume`);
  }
  const lossA = metricsOf(straight).map((m) => m['loss']), lossB = metricsOf(stopped).map((m) => m['loss']);
  assert.equal(lossB, lossA);
});

test('tar shards train too: --data with a brace pattern, no file list recorded', async () => {
  const shards = join(tmp(), 'shards');
  await fs.mkdir(shards);
  for (const c of [0, 1, 2]) {
    const files = (await fs.readdir(join(root, `class${c}`))).sort().map((f) => `class${c}/${f}`);
    execFileSync('tar', ['-cf', join(shards, `train-${c}.tar`), '-C', root, ...files]);
  }
  const r = await newRunFromArgs([...args.slice(0, args.indexOf('--data')), '--data', join(shards, 'train-{0..2}.tar'), ...args.slice(args.indexOf('--data') + 2), '--steps', '2']);
  assert.ok(r.dataset instanceof FolderIndex && r.dataset.sharded && r.dataset.train.count === 300);
  const out = join(tmp(), 'run');
  const done = await train({ config: r.config, out, dataset: r.dataset, numWorkers: 2, ...quiet });
  assert.is(done.steps, 2);
  assert.not.ok(existsSync(join(out, RUN_FILES.dataIndex)));
});

test('unreadable files: mid-epoch the run stops naming the file with the last checkpoint kept; --skip-bad-images names and skips them', async () => {
  const data = join(tmp(), 'data');
  await fs.cp(root, data, { recursive: true });
  // Truncate the first image of step 4's batch (epoch 0): a JPEG or PNG header, no image behind it.
  const index = await indexImageFolder(data);
  const victim = index.train.file(epochPermutation(config.seed, 0, index.train.count)[4 * 32]!);
  const bytes = await fs.readFile(victim);
  await fs.writeFile(victim, bytes.subarray(0, bytes.length >> 1));
  const cfg: TrainConfig = { ...applyOverrides(config, ['steps=6']), data };
  const out = join(tmp(), 'run');
  const error = await train({ config: cfg, out, numWorkers: 2, checkpointEvery: 2, ...quiet }).then(() => undefined, (e: unknown) => e);
  assert.ok(error instanceof BadImageError && error.file === victim, `names the file: ${String(error)}`);
  assert.is(loadCheckpoint(join(out, 'checkpoint.safetensors')).meta.step, 4, 'the checkpoint of step 4 is intact');

  // A text file is found when indexing, the truncated image when first read: both named, the run completes.
  const notes = join(data, 'class1', 'notes.jpg');
  await fs.writeFile(notes, 'not an image');
  const atIndex = await train({ config: cfg, out: join(tmp(), 'strict'), ...quiet }).then(() => undefined, (e: unknown) => e);
  assert.ok(atIndex instanceof BadImageError && atIndex.file === notes, `indexing names the file: ${String(atIndex)}`);
  const lines: string[] = [];
  const r = await train({ config: cfg, out: join(tmp(), 'skip'), numWorkers: 2, skipBadImages: true, progress: 'none', threads: 1, log: (l) => lines.push(l) });
  assert.is(r.steps, 6);
  assert.ok(lines.some((l) => l.includes(notes)), `indexing skip named: ${lines.join('\n')}`);
  assert.ok(lines.some((l) => l.includes(victim) && l.includes('skipping')), `mid-epoch skip named: ${lines.join('\n')}`);
});

test.run();
