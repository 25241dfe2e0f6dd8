/**
 * Any backbone in DINO: a backbone defined here, in the user's code, registered with `registerBackbone`, trains with
 * DINO through the library's `train` (no library edit) and its loss changes; a ResNet trains too; an unregistered
 * name is refused naming the remedy. Imports go through the package entry, as a user's would.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  type BackboneConfig, type CustomBackboneConfig, type Dataset, Prng, type Scope, type Tensor, type TrainConfig,
  buildDinoStep, conv2d, datasetImages, exportBackbone, gelu, getPreset, linear, readFeatureFile, readSafetensors, reduceMean, registerBackbone,
  train, trainingStepGraph, writeFeatures,
} from 'dino-ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dino-backbones-'));
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The user's backbone: a strided 3x3 conv, GELU, global average pool, a linear layer (any crop size works). */
function tinyConvNet(s: Scope, images: Tensor, cfg: CustomBackboneConfig): { features: Tensor } {
  const width = cfg.options!['width'] as number;
  const conv = s.child('stem');
  const x = conv.run(() => {
    const w = conv.param('weight', [width, cfg.inChans, 3, 3], { kind: 'truncnormal', std: 0.2 });
    const b = conv.param('bias', [width], { kind: 'zeros' });
    return gelu(conv2d(images, w, b, { strides: [2, 2], pads: [1, 1, 1, 1] }));
  });
  return { features: linear(s.child('proj'), reduceMean(x, [2, 3]), width, width) };
}
const tinyConv = registerBackbone('tiny-conv', { build: (s, images, cfg) => tinyConvNet(s, images, cfg), featureDim: (cfg) => cfg.options!['width'] as number });

/** 48 random 28 x 28 grayscale images (train), no test split. */
function randomDataset(): Dataset {
  const prng = Prng.seeded(3);
  const pixels = Uint8Array.from({ length: 48 * 28 * 28 }, () => Math.floor(prng.uniform() * 256));
  return { name: 'random', channels: 1, height: 28, width: 28, classes: [], train: { count: 48, pixels, labels: new Int32Array(48).fill(-1) }, test: { count: 0, pixels: new Uint8Array(0), labels: new Int32Array(0) } };
}

/** fmnist-tiny6's training settings with `backbone`, a small head and batch, `steps` steps. */
function config(backbone: BackboneConfig, steps: number): TrainConfig<BackboneConfig> {
  const base = getPreset('fmnist-tiny6');
  return {
    ...base, backbone, batch: 8, steps, epochs: undefined,
    head: { ...base.head, outDim: 64, hiddenDim: 32, bottleneckDim: 16 },
    augment: { ...base.augment, localCrops: 2 },
  } as TrainConfig<BackboneConfig>;
}

async function losses(cfg: TrainConfig<BackboneConfig>, out: string): Promise<number[]> {
  const r = await train({ config: cfg, out: path.join(dir, out), dataset: randomDataset(), threads: 1, progress: 'none', log: () => {} });
  assert.is(r.steps, cfg.steps);
  return fs.readFileSync(path.join(dir, out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { loss: number }).loss);
}

test('a backbone defined in user code trains with DINO: parameters under student./teacher.backbone, the loss changes', async () => {
  const backbone = tinyConv({ inChans: 1, imgSize: 28, options: { width: 12 } });
  const cfg = config(backbone, 4);
  const names = [...trainingStepGraph(cfg).graph.params.keys()];
  for (const n of ['student.backbone.stem.weight', 'student.backbone.proj.weight', 'teacher.backbone.stem.weight', 'student.head.mlp.0.weight']) assert.ok(names.includes(n), n);
  const l = await losses(cfg, 'custom');
  assert.is(l.length, 4);
  assert.ok(l.every(Number.isFinite), `losses ${l}`);
  assert.ok(new Set(l).size > 1, `the loss changes: ${l}`);
  const saved = JSON.parse(fs.readFileSync(path.join(dir, 'custom', 'config.json'), 'utf8')) as { backbone: unknown };
  assert.equal(saved.backbone, { kind: 'custom', name: 'tiny-conv', inChans: 1, imgSize: 28, options: { width: 12 } });
});

test('a ResNet trains with DINO (BatchNorm in training mode, its running statistics in the state)', async () => {
  const cfg = config({ kind: 'resnet', block: 'basic', layers: [1, 1, 1, 1], width: 4, inChans: 1, imgSize: 28 }, 3);
  const l = await losses(cfg, 'resnet');
  assert.ok(l.every(Number.isFinite), `losses ${l}`);
  assert.ok(new Set(l).size > 1, `the loss changes: ${l}`);
  const names = [...trainingStepGraph(cfg).graph.params.keys()];
  assert.ok(names.includes('student.backbone.layer4.0.conv2.weight'));
  assert.ok(names.includes('teacher.backbone.bn1.running_mean'));
});

/** erf to 1.5e-7 (Abramowitz and Stegun 7.1.26). */
function erf(x: number): number {
  const t = 1 / (1 + 0.3275911 * Math.abs(x));
  const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-x * x);
  return x >= 0 ? y : -y;
}

test("the user's backbone exports as a feature model: its features equal a hand computation from the checkpoint's teacher", async () => {
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'custom', 'config.json'), 'utf8')) as TrainConfig<BackboneConfig>;
  const checkpoint = path.join(dir, 'custom', 'checkpoint.safetensors');
  const model = path.join(dir, 'custom.onnx');
  const r = exportBackbone({ config: cfg, checkpoint, out: model });
  assert.is(r.info.featureDim, 12);
  const data = randomDataset();
  const out = path.join(dir, 'custom-features.safetensors');
  await writeFeatures({ model, out, batch: 16, images: datasetImages(data, ['train'], [28, 28]) });
  const file = readFeatureFile(out);
  assert.equal([file.count, file.dim], [48, 12]);
  const state = readSafetensors(checkpoint).tensors;
  const w = (name: string) => state.get(`teacher.backbone.${name}`)!.data as Float32Array;
  const [m, sd] = [cfg.augment.mean[0]!, cfg.augment.std[0]!];
  for (const i of [0, 17, 47]) {
    const px = (y: number, x: number) => (y < 0 || x < 0 || y >= 28 || x >= 28 ? 0 : (data.train.pixels[i * 784 + y * 28 + x]! / 255 - m) / sd);
    const pooled = new Float64Array(12);
    for (let c = 0; c < 12; c++) {
      for (let oy = 0; oy < 14; oy++) for (let ox = 0; ox < 14; ox++) {
        let v = w('stem.bias')[c]!;
        for (let dy = 0; dy < 3; dy++) for (let dx = 0; dx < 3; dx++) v += w('stem.weight')[c * 9 + dy * 3 + dx]! * px(2 * oy + dy - 1, 2 * ox + dx - 1);
        pooled[c]! += (0.5 * v * (1 + erf(v / Math.SQRT2))) / 196;
      }
    }
    for (let o = 0; o < 12; o++) {
      let f = w('proj.bias')[o]!;
      for (let c = 0; c < 12; c++) f += w('proj.weight')[o * 12 + c]! * pooled[c]!;
      assert.ok(Math.abs(f - file.data[i * 12 + o]!) < 1e-4, `image ${i} feature ${o}: ${file.data[i * 12 + o]} vs hand ${f}`);
    }
  }
});

test("the ResNet teacher exports as a feature model: BatchNorm reads the checkpoint's running statistics", async () => {
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'resnet', 'config.json'), 'utf8')) as TrainConfig<BackboneConfig>;
  const state = new Map(readSafetensors(path.join(dir, 'resnet', 'checkpoint.safetensors')).tensors);
  const images = datasetImages(randomDataset(), ['train'], [28, 28]);
  const features = async (name: string, st: typeof state, network: 'teacher' | 'student' = 'teacher') => {
    const model = path.join(dir, `${name}.onnx`);
    assert.is(exportBackbone({ config: cfg, checkpoint: st, out: model, network }).info.featureDim, 32, '4 * 2^3 channels (basic blocks)');
    await writeFeatures({ model, out: path.join(dir, `${name}.npy`), images });
    return readFeatureFile(path.join(dir, `${name}.npy`)).data;
  };
  const teacher = await features('resnet-teacher', state);
  assert.ok(teacher.every(Number.isFinite));
  assert.not.equal(Array.from(await features('resnet-student', state, 'student')), Array.from(teacher), 'the student is another network');
  // BatchNorm in inference mode: shifting layer4's last running mean shifts the features; the batch does not.
  const key = 'teacher.backbone.layer4.0.bn2.running_mean';
  const shifted = new Map(state);
  shifted.set(key, { ...state.get(key)!, data: (state.get(key)!.data as Float32Array).map((v) => v + 1) });
  assert.not.equal(Array.from(await features('resnet-shifted', shifted)), Array.from(teacher));
});

test('an unregistered backbone is refused naming registerBackbone', () => {
  const built = () => buildDinoStep({ ...config({ kind: 'custom', name: 'nowhere', inChans: 1, imgSize: 28 }, 1), globalSize: 28, localSize: 12, localCrops: 2, studentTemp: 0.1, centerMomentum: 0.9, clipGrad: 3 });
  // The registry is per process: other test files (run in the same process by npm test) register their own too.
  assert.throws(built, /no backbone "nowhere" is registered \(registered: [^)]*\btiny-conv\b[^)]*\): call registerBackbone\("nowhere"/);
});

test.run();
