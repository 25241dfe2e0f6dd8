/**
 * The training loop on a tiny configuration with real Fashion-MNIST images: it learns (loss falls, teacher
 * neither uniform nor one-hot), resume is bit-identical, the teacher is an exact EMA with no gradient,
 * and a NaN loss stops the run keeping the last good checkpoint.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TrainConfig, applyOverrides } from '../../../runtime/dino/config.ts';
import { getPreset } from '../../../runtime/dino/presets.ts';
import { NonFiniteLossError, train } from '../../../runtime/dino/train.ts';
import { RunFolderError } from '../../../runtime/dino/run-folder.ts';
import { wordError } from '../../../cli/errors.ts';
import { loadCheckpoint } from '../../../runtime/dino/checkpoint.ts';
import { loadFashionMnist } from '../../../runtime/data/fashion-mnist.ts';
import type { Dataset } from '../../../runtime/data/dataset.ts';
import * as E from 'fp-ts/lib/Either.js';
import { buildDinoStep } from '../../../models/dino-step.ts';
import { stepConfig } from '../../../runtime/dino/config.ts';
import { initialState } from '../../../runtime/dino/train.ts';
import { StepRunner } from '../../../runtime/step-runner.ts';
import { MultiCropLoader } from '../../../runtime/data/loader.ts';
import { ort } from '../../../runtime/backend.ts';

const tiny: TrainConfig = applyOverrides(getPreset('fmnist-tiny6'), [
  'backbone.embedDim=32', 'backbone.depth=2', 'backbone.numHeads=2', 'backbone.dropPathRate=0.1',
  'head.outDim=64', 'head.hiddenDim=64', 'head.bottleneckDim=16',
  'batch=16', 'augment.localCrops=2', 'steps=12', 'freezeLastLayerSteps=2', 'lr=0.02', 'warmupFraction=0.2',
]);
let data: Dataset;
const dirs: string[] = [];
const tmp = () => { const d = mkdtempSync(join(tmpdir(), 'dino-train-')); dirs.push(d); return d; };
const quiet = { progress: 'none', log: () => {}, threads: 1 } as const;

test.before(async () => { data = await loadFashionMnist({ limitPerClass: 40 }); });
test.after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const sameState = (a: Map<string, { data: unknown }>, b: Map<string, { data: unknown }>) => {
  assert.equal([...a.keys()].sort(), [...b.keys()].sort());
  for (const [k, t] of a) {
    const x = t.data as Float32Array, y = b.get(k)!.data as Float32Array;
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) assert.unreachable(`${k}[${i}] differs after resume: ${x[i]} vs ${y[i]}`);
  }
};

test('a short run on Fashion-MNIST writes one metrics line per step and keeps the teacher away from both collapses', async () => {
  const out = tmp();
  const cfg = applyOverrides(tiny, ['steps=30']);
  const r = await train({ config: cfg, out, dataset: data, ...quiet });
  assert.is(r.steps, 30);
  const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.is(lines.length, 30);
  for (const m of lines) {
    assert.ok(Number.isFinite(m.loss) && Number.isFinite(m.grad_norm) && m.images_per_s > 0);
    // entropy 0 = one-hot collapse, log K = uniform collapse (K = 64)
    assert.ok(m.teacher_entropy > 0.05 && m.teacher_entropy < Math.log(64) - 0.05, `step ${m.step}: teacher entropy ${m.teacher_entropy}`);
  }
  assert.ok(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).batch === 16);
});

test('the compiled DINO step lowers the loss (fixed teacher, center and batch: the student fits the teacher)', async () => {
  const cfg = applyOverrides(tiny, ['backbone.dropPathRate=0']);
  const built = buildDinoStep(stepConfig(cfg));
  if (E.isLeft(built)) throw new Error('bad graph');
  const runner = await StepRunner.compile(built.right.graph, { threads: 1 });
  const state = initialState(runner.signature.state, 1);
  const batch = await new MultiCropLoader({ dataset: data, batchSize: cfg.batch, seed: 1, augment: cfg.augment, workers: 0 }).next();
  const feeds = {
    globals: new ort.Tensor('float32', batch.globals, [2 * cfg.batch, 1, 28, 28]),
    locals: new ort.Tensor('float32', batch.locals, [2 * cfg.batch, 1, 12, 12]),
  };
  const losses: number[] = [];
  for (let i = 0; i < 20; i++) {
    // momentum 1: the teacher stays as initialised; the center is reset so the target does not move
    state.set('center', new ort.Tensor('float32', new Float32Array(cfg.head.outDim), [1, cfg.head.outDim]));
    losses.push((await runner.run(state, feeds, { lr: 1e-3, wd: 0.04, momentum: 1, teacher_temp: 0.04, 'gate.last_layer': 1 }))['loss']!);
  }
  // the floor is the teacher's entropy plus what no student can match across different crops
  const tail = losses.slice(-5).reduce((a, b) => a + b, 0) / 5;
  assert.ok(tail < 0.85 * losses[0]!, `loss ${losses.map((l) => l.toFixed(3)).join(' ')}`);
  await runner.release();
});

test('12 steps straight == 5 steps + resume + 7 steps, bit for bit (CPU)', async () => {
  const a = tmp(), b = tmp();
  await train({ config: tiny, out: a, dataset: data, ...quiet });
  const first = await train({ config: tiny, out: b, dataset: data, stopAfter: 5, ...quiet });
  assert.is(first.steps, 5);
  assert.is(loadCheckpoint(join(b, 'checkpoint.safetensors')).meta.step, 5);
  await train({ config: tiny, out: b, dataset: data, resume: true, ...quiet });
  const ca = loadCheckpoint(join(a, 'checkpoint.safetensors')), cb = loadCheckpoint(join(b, 'checkpoint.safetensors'));
  assert.is(cb.meta.step, 12);
  sameState(ca.tensors, cb.tensors);
  assert.is(readFileSync(join(b, 'metrics.jsonl'), 'utf8').trim().split('\n').length, 12);
});

test('K steps per run (ONNX Loop, --steps-per-run) == one step per run, bit for bit, metrics and checkpoints included', async () => {
  const a = tmp(), b = tmp();
  await train({ config: tiny, out: a, dataset: data, ...quiet });
  // runs of 5 cut at the checkpoint boundary (8) and at the end: 5, 3, 4 steps
  const r = await train({ config: tiny, out: b, dataset: data, stepsPerRun: 5, checkpointEvery: 8, ...quiet });
  let refused: unknown;
  try { await train({ config: tiny, out: tmp(), dataset: data, stepsPerRun: 0, ...quiet }); } catch (e) { refused = e; }
  assert.match(String(refused), /stepsPerRun must be a positive integer, got 0/);
  assert.is(r.steps, 12);
  sameState(loadCheckpoint(join(a, 'checkpoint.safetensors')).tensors, loadCheckpoint(join(b, 'checkpoint.safetensors')).tensors);
  const lines = (dir: string) => readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
  const la = lines(a), lb = lines(b);
  assert.equal(lb.map((m) => m['step']), la.map((m) => m['step']));
  for (const [i, m] of la.entries()) for (const key of ['loss', 'teacher_entropy', 'teacher_kl', 'grad_norm', 'lr']) assert.is(lb[i]![key], m[key], `step ${i + 1} ${key}`);
});

test('the teacher is exactly m*teacher + (1-m)*student after each step and gets no gradient', async () => {
  const out = tmp();
  const r1 = await train({ config: tiny, out, dataset: data, stopAfter: 3, ...quiet });
  const before = new Map([...r1.state.tensors].map(([k, t]) => [k, Float32Array.from(t.data as Float32Array)]));
  const r2 = await train({ config: tiny, out, dataset: data, resume: true, stopAfter: 1, ...quiet });
  const m = r2.lastMetrics['momentum']!;
  let checked = 0;
  for (const [name, t] of r2.state.tensors) {
    if (!name.startsWith('teacher.') || name.endsWith('weight_g')) continue;
    const prev = before.get(name)!, s = r2.state.tensors.get('student.' + name.slice(8))!.data as Float32Array;
    const now = t.data as Float32Array;
    for (let i = 0; i < now.length; i++) {
      const want = Math.fround(Math.fround(prev[i]! * m) + Math.fround(s[i]! * Math.fround(1 - m)));
      assert.ok(Math.abs(now[i]! - want) <= 1e-6 * Math.max(1, Math.abs(want)), `${name}[${i}]`);
    }
    checked++;
  }
  assert.ok(checked > 10);
  // no optimizer state exists for the teacher: nothing could have been applied to it but the EMA
  assert.ok(![...r2.state.tensors.keys()].some((k) => k.startsWith('optim.') && k.includes('teacher.')));
});

test('a NaN loss stops the run naming the step, and the last good checkpoint survives', async () => {
  const out = tmp();
  await train({ config: tiny, out, dataset: data, stopAfter: 4, ...quiet });
  const path = join(out, 'checkpoint.safetensors');
  const bytesBefore = readFileSync(path);
  const mtime = statSync(path).mtimeMs;
  // a huge learning rate overflows the weights within a few steps
  const bad = applyOverrides(tiny, ['lr=1e30', 'clipGrad=0']);
  const poisoned = await import('../../../runtime/dino/checkpoint.ts');
  const ck = poisoned.loadCheckpoint(path);
  // resume demands the same config, so start a fresh folder from the same checkpoint contents
  const out2 = tmp();
  await train({ config: bad, out: out2, dataset: data, stopAfter: 1, ...quiet });
  let error: unknown;
  try {
    await train({ config: bad, out: out2, dataset: data, resume: true, ...quiet });
  } catch (e) { error = e; }
  assert.instance(error, NonFiniteLossError);
  assert.match((error as Error).message, /step \d+: the loss is (NaN|Infinity|-Infinity)/);
  assert.match((error as Error).message, /checkpoint/);
  assert.match(wordError(error), /step \d+: the loss is .*Lower --set lr=\.\.\., raise --set clipGrad/);
  const kept = loadCheckpoint(join(out2, 'checkpoint.safetensors'));
  assert.is(kept.meta.step, 1);
  for (const t of kept.tensors.values()) for (const v of t.data as Float32Array) if (!Number.isFinite(v)) assert.unreachable('the kept checkpoint holds non-finite values');
  assert.equal(readFileSync(path), bytesBefore);
  assert.is(statSync(path).mtimeMs, mtime);
  assert.is(ck.meta.step, 4);
  // with several steps per run the same step is named and the same checkpoint kept
  const out3 = tmp();
  await train({ config: bad, out: out3, dataset: data, stopAfter: 1, ...quiet });
  let chunked: unknown;
  try {
    await train({ config: bad, out: out3, dataset: data, resume: true, stepsPerRun: 4, ...quiet });
  } catch (e) { chunked = e; }
  assert.instance(chunked, NonFiniteLossError);
  assert.is((chunked as Error).message, (error as Error).message.replaceAll(out2, out3));
  assert.is(loadCheckpoint(join(out3, 'checkpoint.safetensors')).meta.step, 1);
});

test('an existing run folder is never overwritten without --resume', async () => {
  const out = tmp();
  await train({ config: tiny, out, dataset: data, stopAfter: 1, ...quiet });
  try {
    await train({ config: tiny, out, dataset: data, ...quiet });
    assert.unreachable('should refuse');
  } catch (e) {
    assert.instance(e, RunFolderError);
    assert.is((e as RunFolderError).problem.kind, 'exists');
    assert.match((e as Error).message, /exists: resume that run/);
    // the CLI names its flags
    assert.match(wordError(e), /exists: continue that run with dino train --resume .*, or choose another --out folder/);
  }
});

test('an optional key (koleoWeight) is added by an override, left out at its default, and reaches the step', async () => {
  assert.not.ok('koleoWeight' in tiny, 'absent from the presets: their configs and graphs are as before the key');
  const cfg = applyOverrides(tiny, ['koleoWeight=0.1', 'steps=2']);
  assert.is(cfg.koleoWeight, 0.1);
  assert.is(stepConfig(cfg).koleoWeight, 0.1);
  assert.not.ok('koleoWeight' in applyOverrides(cfg, ['koleoWeight=0']), 'the default value removes the key');
  assert.throws(() => applyOverrides(tiny, ['koleoWeight=true']), /"koleoWeight" must be number/);
  const out = tmp();
  const r = await train({ config: cfg, out, dataset: data, ...quiet });
  assert.ok(Number.isFinite(r.lastMetrics['koleo']), 'the step reports the regulariser');
  assert.is(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).koleoWeight, 0.1);
});

test('centering=sinkhorn is added by an override, refused with another string, left out at center, and trains', async () => {
  assert.not.ok('centering' in tiny, 'absent from the presets: their configs and graphs are as before the key');
  const cfg = applyOverrides(tiny, ['centering=sinkhorn', 'steps=2']);
  assert.is(cfg.centering, 'sinkhorn');
  assert.is(stepConfig(cfg).centering, 'sinkhorn');
  assert.not.ok('centering' in stepConfig(tiny));
  assert.not.ok('centering' in applyOverrides(cfg, ['centering=center']), 'the default value removes the key');
  assert.throws(() => applyOverrides(tiny, ['centering=swav']), /"centering" must be one of center, sinkhorn, got "swav"/);
  assert.throws(() => applyOverrides(tiny, ['centering=3']), /"centering" must be one of center, sinkhorn, got "3"/);
  const out = tmp();
  const r = await train({ config: cfg, out, dataset: data, ...quiet });
  for (const key of ['loss', 'teacher_entropy', 'teacher_kl']) assert.ok(Number.isFinite(r.lastMetrics[key]), `${key} ${r.lastMetrics[key]}`);
  const plain = await train({ config: applyOverrides(tiny, ['steps=2']), out: tmp(), dataset: data, ...quiet });
  assert.ok(r.lastMetrics['loss'] !== plain.lastMetrics['loss'], 'the targets differ from centering\'s');
  assert.is(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).centering, 'sinkhorn');
  assert.ok(r.state.tensors.has('center'), 'the center stays in the state');
});

test.run();
