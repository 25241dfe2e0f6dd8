/**
 * Runs of any backbone kind resume: the config schema checks a ResNet's and a registered backbone's config per kind
 * (every problem named), and a run of each stopped after 3 steps and resumed equals the uninterrupted run bit for bit
 * (every state tensor, every loss). The registered backbone is the user's, registered here through the package entry.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  type AnyTrainConfig, type BackboneConfig, ConfigFileError, type Dataset, Prng, type Scope, type Tensor, applyOverrides, checkTrainConfig,
  conv2d, getPreset, linear, loadCheckpoint, reduceMean, registerBackbone, relu, train,
} from 'dino-ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dino-backbone-resume-'));
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The user's backbone: a strided 3x3 conv, ReLU, global average pool, a linear layer. */
const pooledConv = registerBackbone('pooled-conv', {
  build(s: Scope, images: Tensor, cfg) {
    const width = cfg.options!['width'] as number;
    const conv = s.child('conv');
    const x = conv.run(() => relu(conv2d(images, conv.param('weight', [width, cfg.inChans, 3, 3], { kind: 'truncnormal', std: 0.2 }), conv.param('bias', [width], { kind: 'zeros' }), { strides: [2, 2], pads: [1, 1, 1, 1] })));
    return { features: linear(s.child('proj'), reduceMean(x, [2, 3]), width, width) };
  },
  featureDim: (cfg) => cfg.options!['width'] as number,
});

const RESNET: BackboneConfig = { kind: 'resnet', block: 'basic', layers: [1, 1, 1, 1], width: 4, inChans: 1, imgSize: 28 };
const CUSTOM: BackboneConfig = pooledConv({ inChans: 1, imgSize: 28, options: { width: 8 } });

function randomDataset(): Dataset {
  const prng = Prng.seeded(5);
  const pixels = Uint8Array.from({ length: 32 * 28 * 28 }, () => Math.floor(prng.uniform() * 256));
  return { name: 'random', channels: 1, height: 28, width: 28, classes: [], train: { count: 32, pixels, labels: new Int32Array(32).fill(-1) }, test: { count: 0, pixels: new Uint8Array(0), labels: new Int32Array(0) } };
}

/** fmnist-tiny6's settings with `backbone`, a small head, batch 8, 6 steps; the config as config.json holds it. */
function config(backbone: BackboneConfig): AnyTrainConfig {
  const base = getPreset('fmnist-tiny6');
  return JSON.parse(JSON.stringify({
    ...base, backbone, batch: 8, steps: 6, freezeLastLayerSteps: 2,
    head: { ...base.head, outDim: 32, hiddenDim: 16, bottleneckDim: 8 },
    augment: { ...base.augment, localCrops: 2 },
  })) as AnyTrainConfig;
}

const problemsOf = (value: unknown): string[] => {
  try { checkTrainConfig(value, 'config.json'); } catch (e) { if (e instanceof ConfigFileError) return [...e.problems]; throw e; }
  return [];
};

test('the schema checks a ResNet backbone by its own keys, every problem named', () => {
  assert.equal(problemsOf(config(RESNET)), []);
  const { width: _, ...noWidth } = RESNET as Extract<BackboneConfig, { kind: 'resnet' }>;
  assert.equal(problemsOf({ ...config(RESNET), backbone: { ...noWidth, block: 'wide', layers: [1, 1, 1], depth: 12 } }), [
    'unknown key "backbone.depth" for a resnet backbone',
    '"backbone.block" must be one of basic, bottleneck, got "wide"',
    '"backbone.layers" must be 4 numbers, got 3',
    '"backbone.width" is missing',
  ]);
});

test('the schema checks a registered backbone: name, channels, size, JSON options (optional, an object)', () => {
  assert.equal(problemsOf(config(CUSTOM)), []);
  const { options: _, ...noOptions } = CUSTOM as Extract<BackboneConfig, { kind: 'custom' }>;
  assert.equal(problemsOf(config(noOptions)), []);
  assert.equal(problemsOf({ ...config(CUSTOM), backbone: { kind: 'custom', imgSize: 28, inChans: 1, options: [8] } }), [
    '"backbone.name" is missing',
    '"backbone.options" must be an object, got array of number',
  ]);
  assert.equal(problemsOf({ ...config(CUSTOM), backbone: { kind: 'mlp', inChans: 1 } }).slice(0, 1), ['"backbone.kind" must be one of vit, resnet, custom, got "mlp"']);
});

test('--set overrides take the backbone keys of the config\'s kind', () => {
  assert.is((applyOverrides(config(RESNET), ['backbone.width=8']).backbone as { width: number }).width, 8);
  assert.throws(() => applyOverrides(config(RESNET), ['backbone.depth=2']), /unknown config key "backbone.depth" for a resnet backbone \(its keys: backbone.kind, backbone.block, backbone.layers, backbone.width/);
});

/** Trains `cfg` in `out`: 6 steps straight, or 3 then resumed to the end; its losses and final state. */
async function run(cfg: AnyTrainConfig, out: string, interrupted: boolean): Promise<{ losses: number[]; state: Map<string, Float32Array> }> {
  const opts = { config: cfg, out: path.join(dir, out), dataset: randomDataset(), threads: 1, progress: 'none', log: () => {} } as const;
  if (interrupted) {
    const first = await train({ ...opts, stopAfter: 3 });
    assert.is(first.steps, 3);
    await train({ ...opts, resume: true });
  } else await train(opts);
  const losses = fs.readFileSync(path.join(dir, out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { loss: number }).loss);
  const ckpt = loadCheckpoint(path.join(dir, out, 'checkpoint.safetensors'));
  assert.equal(ckpt.meta.config, cfg, 'the checkpoint records the config');
  return { losses, state: new Map([...ckpt.tensors].map(([k, t]) => [k, t.data as Float32Array])) };
}

for (const [name, backbone] of [['a ResNet', RESNET], ['a registered backbone', CUSTOM]] as const) {
  test(`${name}: 3 steps, stop, resume == 6 steps straight, bit for bit`, async () => {
    const cfg = config(backbone);
    const straight = await run(cfg, `${backbone.kind}-straight`, false);
    const resumed = await run(cfg, `${backbone.kind}-resumed`, true);
    assert.is(straight.losses.length, 6);
    assert.equal(resumed.losses, straight.losses);
    assert.ok(new Set(straight.losses).size > 1, `the loss changes: ${straight.losses}`);
    assert.equal([...resumed.state.keys()].sort(), [...straight.state.keys()].sort());
    for (const [k, a] of straight.state) {
      const b = resumed.state.get(k)!;
      for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) assert.unreachable(`${k}[${i}] differs after resume: ${a[i]} vs ${b[i]}`);
    }
  });
}

test.run();
