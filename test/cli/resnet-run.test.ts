/**
 * A ResNet through the CLI: `--arch resnet50` is DINO's ResNet-50 setup with AdamW (what differs is stated);
 * `--arch resnet18 --image-size 32` trains on a generated RGB image folder, resumes, exports its features model
 * (attention, serve and linear refused as ViT-only, naming what works), and `dino features` / `dino knn` run on it.
 * A registered backbone's run (trained here through the library): `--resume` and `--run` name the script route; its
 * exported features model goes through `dino features --model`.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { newRunFromArgs } from '../../cli/train.ts';
import { readCheckpointMeta } from '../../runtime/dino/checkpoint.ts';
import { readFeatureFile } from '../../exports/evaluation/feature-file.ts';
import { exportBackbone, readBackboneExportInfo } from '../../exports/export/backbone.ts';
import { type BackboneConfig, Prng, type TrainConfig, conv2d, getPreset, linear, reduceMean, registerBackbone, relu, train } from 'dino-ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'dino-resnet-run-'));
test.after(() => fs.rmSync(DIR, { recursive: true, force: true }));
const DATA = path.join(DIR, 'data'), RUN = path.join(DIR, 'run');

const dino = async (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
  try {
    const r = await promisify(execFile)(process.execPath, [path.join(ROOT, 'bin/dino.mjs'), ...args], { cwd: DIR, env: { ...process.env, NO_COLOR: '1' }, timeout: 240_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
};

test('--arch resnet50: ResNet-50 with DINO\'s ResNet settings (BN head, wd 1e-4, crop scales) and AdamW at 0.0005', async () => {
  const { config: c } = await newRunFromArgs(['--arch', 'resnet50', '--steps', '5']);
  assert.equal(c.backbone, { kind: 'resnet', block: 'bottleneck', layers: [3, 4, 6, 3], width: 64, inChans: 3, imgSize: 224 });
  assert.equal(
    [c.preset, c.head.useBn, c.head.outDim, c.lr, c.weightDecay, c.weightDecayEnd, c.augment.globalScale, c.augment.localScale, c.augment.localSize, c.augment.localCrops, c.clipGrad, c.momentumTeacher],
    ['resnet50', true, 65536, 0.0005, 1e-4, 1e-4, [0.14, 1], [0.05, 0.14], 96, 8, 3, 0.996],
  );
  const usage = async (argv: string[]) => ((await newRunFromArgs(argv).catch((e: unknown) => e)) as Error).message;
  assert.match(await usage(['--arch', 'resnet18', '--patch-size', '8']), /--patch-size applies to a ViT; --arch resnet18 has no patches/);
  assert.match(await usage(['--arch', 'resnet18', '--image-size', '16']), /a ResNet downsamples by 32/);
  assert.match(await usage(['--arch', 'resnet18', '--set', 'backbone.depth=2']), /unknown config key "backbone.depth" for a resnet backbone/);
});

test('dino train --arch resnet18 --image-size 32 on a generated folder: 3 steps, resumed to 5', async () => {
  // Two classes told apart by colour, 12 images each, 40 px with noise.
  let seed = 1;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (const [c, rgb] of [['red', [200, 40, 40]], ['blue', [40, 40, 200]]] as const) {
    fs.mkdirSync(path.join(DATA, c), { recursive: true });
    for (let i = 0; i < 12; i++) {
      const px = Buffer.alloc(40 * 40 * 3);
      for (let j = 0; j < px.length; j++) px[j] = Math.max(0, Math.min(255, rgb[j % 3]! + Math.round((rand() - 0.5) * 120)));
      await sharp(px, { raw: { width: 40, height: 40, channels: 3 } }).png().toFile(path.join(DATA, c, `${i}.png`));
    }
  }
  const small = ['--set', 'backbone.width=8', '--set', 'head.outDim=64', '--set', 'head.hiddenDim=32', '--set', 'head.bottleneckDim=16'];
  const r = await dino('train', '--arch', 'resnet18', '--image-size', '32', '--data', DATA, '--holdout', '0.25', '--batch', '8', '--local-crops', '2', '--steps', '5', '--threads', '1', '--num-workers', '1', ...small, '--out', RUN);
  assert.is(r.code, 0, r.stderr);
  const cfg = JSON.parse(fs.readFileSync(path.join(RUN, 'config.json'), 'utf8'));
  assert.equal([cfg.preset, cfg.backbone.kind, cfg.backbone.width, cfg.backbone.imgSize, cfg.augment.globalSize, cfg.augment.localSize, cfg.head.useBn], ['resnet18_32px', 'resnet', 8, 32, 32, 16, true]);
  assert.is(readCheckpointMeta(path.join(RUN, 'checkpoint.safetensors')).step, 5);
  const resumed = await dino('train', '--resume', RUN, '--steps', '7', '--threads', '1', '--num-workers', '1');
  assert.is(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stdout, /done after 7 steps/);
  const losses = fs.readFileSync(path.join(RUN, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).loss as number);
  assert.is(losses.length, 7);
  assert.ok(losses.every(Number.isFinite), String(losses));
});

test('dino export --run of a ResNet run writes its features model; attention and serve are refused as ViT-only', async () => {
  const r = await dino('export', '--run', RUN);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /the resnet teacher's features model, images \[N, 3, 32, 32\] in \[0, 1\] -> features \[N, 64\].*ViT-only/);
  const info = readBackboneExportInfo(path.join(RUN, 'teacher.onnx'))!;
  assert.equal([info.featureDim, info.imageSize, info.backbone.kind], [64, [32, 32], 'resnet']);
  const pth = await dino('export', '--run', RUN, '--out', path.join(DIR, 't.pth'));
  assert.is(pth.code, 2, pth.stderr);
  assert.match(pth.stderr, /trains a resnet backbone: it exports as --format onnx/);
  const att = await dino('attention', '--run', RUN, path.join(DATA, 'red', '0.png'));
  assert.is(att.code, 2);
  assert.match(att.stderr, /trains a resnet backbone; attention needs a ViT's \[CLS\] attention/);
});

test('dino features --run and dino knn --run on the ResNet run', async () => {
  const out = path.join(DIR, 'features.safetensors');
  const f = await dino('features', '--run', RUN, '--out', out);
  assert.is(f.code, 0, f.stderr);
  const file = readFeatureFile(out);
  assert.equal([file.count, file.dim], [24, 64]);
  assert.ok(file.data.every(Number.isFinite));
  const k = await dino('knn', '--run', RUN, '--nb-knn', '1,3', '--json');
  assert.is(k.code, 0, k.stderr);
  const result = JSON.parse(k.stdout.trim().split('\n').pop()!) as { top1?: unknown };
  assert.ok(JSON.stringify(result).includes('top1'), k.stdout);
});

test('dino linear --run of a ResNet run is refused, naming dino features + linear --features', async () => {
  const r = await dino('linear', '--run', RUN);
  assert.is(r.code, 2, r.stderr);
  assert.match(r.stderr, /trains a resnet backbone; linear needs a ViT's .*dino linear --features F.safetensors/);
});

test("a registered backbone's run: the CLI names the script route for resume and --run, and reads its exported model", async () => {
  const tinyConv = registerBackbone('cli-tiny-conv', {
    build(s, images, cfg) {
      const conv = s.child('conv');
      const x = conv.run(() => relu(conv2d(images, conv.param('weight', [6, cfg.inChans, 3, 3], { kind: 'truncnormal', std: 0.2 }), conv.param('bias', [6], { kind: 'zeros' }), { strides: [2, 2], pads: [1, 1, 1, 1] })));
      return { features: linear(s.child('proj'), reduceMean(x, [2, 3]), 6, 6) };
    },
    featureDim: () => 6,
  });
  const base = getPreset('fmnist-tiny6');
  const config: TrainConfig<BackboneConfig> = {
    ...base, backbone: tinyConv({ inChans: 3, imgSize: 32 }), batch: 8, steps: 2,
    head: { ...base.head, outDim: 32, hiddenDim: 16, bottleneckDim: 8 },
    augment: { ...base.augment, globalSize: 32, localSize: 16, localCrops: 2, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] },
  };
  const prng = Prng.seeded(2);
  const pixels = Uint8Array.from({ length: 16 * 3 * 32 * 32 }, () => Math.floor(prng.uniform() * 256));
  const dataset = { name: 'random', channels: 3, height: 32, width: 32, classes: [], train: { count: 16, pixels, labels: new Int32Array(16).fill(-1) }, test: { count: 0, pixels: new Uint8Array(0), labels: new Int32Array(0) } };
  const run = path.join(DIR, 'custom');
  const trained = await train({ config, out: run, dataset, threads: 1, progress: 'none', log: () => {} });
  const resume = await dino('train', '--resume', run, '--steps', '4');
  assert.is(resume.code, 2);
  assert.match(resume.stderr, /trains the registered backbone "cli-tiny-conv", code of your program that the CLI cannot import; resume it from your script/);
  const knn = await dino('knn', '--run', run);
  assert.is(knn.code, 2);
  assert.match(knn.stderr, /registered backbone "cli-tiny-conv".*give the CLI --model teacher.onnx/);
  const model = path.join(DIR, 'custom.onnx');
  exportBackbone({ config, checkpoint: trained.checkpoint, out: model });
  const out = path.join(DIR, 'custom-features.npy');
  const f = await dino('features', '--model', model, '--data', DATA, '--out', out);
  assert.is(f.code, 0, f.stderr);
  const file = readFeatureFile(out);
  assert.equal([file.count, file.dim], [24, 6]);
  assert.ok(file.data.every(Number.isFinite));
});

test.run();
