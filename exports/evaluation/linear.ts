/**
 * Linear probe on frozen features (DINO's `eval_linear.py`): a single Linear(F, classes) trained with softmax
 * cross-entropy by the framework's own compiled step graph (`addOptimizerStep` + `StepRunner`: SGD with momentum or
 * AdamW, cosine learning-rate decay to 0), then top-1 accuracy on the test split. No other ML library.
 *
 * Features as DINO's: the final-norm [CLS] of the last `nLastBlocks` blocks, concatenated (DINO's `--n_last_blocks`;
 * its paper uses 4 for ViT-S, 1 for ViT-B), and with `avgpoolPatchtokens` the mean of the last block's final-norm
 * patch tokens (DINO's `--avgpool_patchtokens`; true for ViT-B). Defaults here: 1 block, no average (the exported
 * `features`, as before). More blocks or the average use a second export of the run's teacher,
 * DIR/teacher.linear-n<n>.onnx (exports/export/teacher.ts, `intermediate`).
 *
 * The features are computed as `dino features` computes them (features.ts `evalImages`, `imageFeatures`): an image
 * folder is streamed batch by batch, so memory holds the features, never the images.
 *
 * Departures from DINO, because features are computed once and the probe is short: no augmentation (DINO trains on
 * RandomResizedCrop + flip of each image every epoch; here every image of a folder passes DINO's evaluation
 * transform, Resize(side * 256 / 224) + CenterCrop(side), once, for training the probe too); features are
 * standardised per dimension with the train split's mean and std (`standardize`, default true; DINO feeds raw
 * features); the defaults are 20 epochs of SGD at lr 0.1 for batch 256 (DINO: 100 epochs, lr 0.001 per 256, batch
 * 128 per GPU, momentum 0.9, no weight decay as here), with the cosine decay per step rather than per epoch; one seed,
 * no validation every epoch, no best-epoch pick (DINO reports the best test accuracy over its epochs).
 */
import * as E from 'fp-ts/lib/Either.js';
import * as fs from 'node:fs';
import * as D from '../../dsl/index.ts';
import { Graph, Prng, Scope, formatError } from '../../dsl/index.ts';
import { ort } from '../../runtime/backend.ts';
import { StepRunner } from '../../runtime/step-runner.ts';
import { TrainState } from '../../runtime/state.ts';
import { cosineSchedule } from '../../runtime/dino/schedules.ts';
import { createSession } from '../../runtime/backend.ts';
import { type EvalDataOptions, EvalOptionError } from './eval-data.ts';
import { readFeatureSplits } from './feature-file.ts';
import { type FeatureSet, type LinearFeatureSpec, checkLinearFeature, evenlySpaced } from './extract-features.ts';
import { type EvalSplit, evalImages, featureModel, imageFeatures, linearFeatureOf } from './features.ts';
import { runModel } from './run-model.ts';
import { readRunConfig } from '../export/teacher.ts';

export interface ProbeOptions {
  readonly epochs?: number;
  readonly batch?: number;
  readonly optimizer?: 'sgd' | 'adamw';
  /** Peak learning rate (default 0.1 for SGD, 1e-3 for AdamW), cosine-decayed to 0 over the run. */
  readonly lr?: number;
  readonly weightDecay?: number;
  /** SGD momentum (default 0.9). */
  readonly momentum?: number;
  readonly seed?: number;
  readonly numClasses?: number;
  /** Standardise each feature dimension with the train split's mean and std (default true; DINO does not). */
  readonly standardize?: boolean;
  readonly log?: (msg: string) => void;
}

export interface ProbeResult {
  /** Test top-1 accuracy in percent. */
  readonly top1: number;
  /** Train top-1 accuracy in percent (after the last epoch). */
  readonly trainTop1: number;
  /** Mean training loss of each epoch. */
  readonly epochLosses: number[];
  readonly n_train: number;
  readonly n_test: number;
  readonly steps: number;
}

/** Per-dimension mean and std of `set` (std floored at 1e-6). */
function statistics(set: FeatureSet): { mean: Float32Array; std: Float32Array } {
  const d = set.dim, mean = new Float64Array(d), sq = new Float64Array(d);
  for (let i = 0; i < set.count; i++) for (let j = 0; j < d; j++) {
    const v = set.data[i * d + j]!;
    mean[j]! += v;
    sq[j]! += v * v;
  }
  const m = new Float32Array(d), s = new Float32Array(d);
  for (let j = 0; j < d; j++) {
    m[j] = mean[j]! / set.count;
    s[j] = Math.max(Math.sqrt(Math.max(sq[j]! / set.count - m[j]! ** 2, 0)), 1e-6);
  }
  return { mean: m, std: s };
}

function standardize(set: FeatureSet, mean: Float32Array, std: Float32Array): Float32Array {
  const d = set.dim, out = new Float32Array(set.data.length);
  for (let i = 0; i < set.count; i++) for (let j = 0; j < d; j++) out[i * d + j] = (set.data[i * d + j]! - mean[j]!) / std[j]!;
  return out;
}

/** The classifier: `linear.weight` [C, D] (normal, std 0.01, as DINO's LinearClassifier) and `linear.bias` [C]. */
function classifier(g: Graph, x: D.Tensor, dim: number, classes: number): D.Tensor {
  const s = new Scope(g).child('linear');
  return s.run(() => {
    const w = s.param('weight', [classes, dim], { kind: 'normal', std: 0.01 });
    const b = s.param('bias', [classes], { kind: 'zeros' });
    return D.add(D.matmul(x, D.transposeLast2(w)), b);
  });
}

/** Trains the probe on `train` and measures top-1 on `test`. */
export async function trainLinearProbe(train: FeatureSet, test: FeatureSet, opts: ProbeOptions = {}): Promise<ProbeResult> {
  if (train.dim !== test.dim) throw new Error(`train features have ${train.dim} dims, test features ${test.dim}`);
  if (train.labels.some((l) => l < 0)) throw new Error('the linear probe needs a label for every train image');
  const classes = opts.numClasses ?? Math.max(...train.labels, ...test.labels) + 1;
  const d = train.dim;
  const batch = Math.min(opts.batch ?? 256, train.count);
  const epochs = opts.epochs ?? 20;
  const kind = opts.optimizer ?? 'sgd';
  const peakLr = (opts.lr ?? (kind === 'sgd' ? 0.1 : 1e-3)) * (kind === 'sgd' ? batch / 256 : 1);
  const prng = Prng.seeded(opts.seed ?? 0);
  let trainX = train.data, testX = test.data;
  if (opts.standardize !== false) {
    const { mean, std } = statistics(train);
    [trainX, testX] = [standardize(train, mean, std), standardize(test, mean, std)];
  }

  // The step graph: loss, backward, optimizer update; metrics loss and accuracy.
  const g = new Graph('linear_probe_step');
  const x = g.input('x', 'float32', [batch, d]);
  const target = g.input('target', 'float32', [batch, classes]);
  const logits = classifier(g, x, d, classes);
  const loss = g.within('loss', () => D.neg(D.meanAll(D.reduceSum(D.mul(D.logSoftmax(logits, -1), target), -1))));
  const step = D.addOptimizerStep(g, { loss, optimizer: kind === 'sgd' ? { kind: 'sgd', momentum: opts.momentum ?? 0.9 } : { kind: 'adamw' } });
  if (E.isLeft(step)) throw new Error(step.left.map(formatError).join('\n'));
  g.output('metric.loss', loss);
  const runner = await StepRunner.compile(g);
  const state = TrainState.init(runner.signature.state, prng);
  const hasWd = runner.signature.inputs.some((i) => i.name === 'wd');

  const stepsPerEpoch = Math.floor(train.count / batch);
  const total = stepsPerEpoch * epochs;
  const xb = new Float32Array(batch * d), tb = new Float32Array(batch * classes);
  const epochLosses: number[] = [];
  let stepIndex = 0;
  try {
    for (let epoch = 0; epoch < epochs; epoch++) {
      const order = prng.permutation(train.count);
      let sum = 0;
      for (let s = 0; s < stepsPerEpoch; s++) {
        tb.fill(0);
        for (let i = 0; i < batch; i++) {
          const src = order[s * batch + i]!;
          xb.set(trainX.subarray(src * d, (src + 1) * d), i * d);
          tb[i * classes + train.labels[src]!] = 1;
        }
        const lr = cosineSchedule(stepIndex++, total, peakLr, 0);
        const m = await runner.run(
          state,
          { x: new ort.Tensor('float32', xb, [batch, d]), target: new ort.Tensor('float32', tb, [batch, classes]) },
          hasWd ? { lr, wd: opts.weightDecay ?? 0 } : { lr },
        );
        sum += m['loss']!;
      }
      epochLosses.push(sum / stepsPerEpoch);
      opts.log?.(`linear probe epoch ${epoch + 1}/${epochs}: loss ${epochLosses[epoch]!.toFixed(4)}`);
    }
  } finally {
    await runner.release();
  }

  // Evaluation: the same classifier in an inference graph with the trained weights baked in.
  const ev = new Graph('linear_probe');
  ev.output('logits', classifier(ev, ev.input('x', 'float32', ['N', d]), d, classes));
  const values = new Map([...ev.params.keys()].map((name) => [name, Float32Array.from(state.values(name))]));
  const bytes = D.emitOnnx(ev, { params: { values } });
  if (E.isLeft(bytes)) throw new Error(bytes.left.map(formatError).join('\n'));
  const session = await createSession(bytes.right);
  const accuracy = async (xs: Float32Array, set: FeatureSet) => {
    const out = (await session.run({ x: new ort.Tensor('float32', xs, [set.count, d]) }))['logits']!.data as Float32Array;
    let correct = 0, labelled = 0;
    for (let i = 0; i < set.count; i++) {
      if (set.labels[i]! < 0) continue;
      labelled++;
      let best = 0;
      for (let c = 1; c < classes; c++) if (out[i * classes + c]! > out[i * classes + best]!) best = c;
      if (best === set.labels[i]) correct++;
    }
    return { pct: labelled ? (100 * correct) / labelled : 0, labelled };
  };
  const testAcc = await accuracy(testX, test);
  const trainAcc = await accuracy(trainX, train);
  await session.release();
  return { top1: testAcc.pct, trainTop1: trainAcc.pct, epochLosses, n_train: train.count, n_test: testAcc.labelled, steps: total };
}

export interface LinearProbeOptions extends ProbeOptions, EvalDataOptions {
  readonly run?: string;
  readonly model?: string;
  /** 'fmnist' or an image folder; default the run's own data (see exports/evaluation/eval-data.ts), 'fmnist' without a run. */
  readonly dataset?: string;
  /** DINO's `--n_last_blocks`: concatenate the final-norm [CLS] of this many last blocks. Default 1. */
  readonly nLastBlocks?: number;
  /** DINO's `--avgpool_patchtokens`: append the mean of the last block's final-norm patch tokens. Default false. */
  readonly avgpoolPatchtokens?: boolean;
  readonly limitTrain?: number;
  readonly limitTest?: number;
  /** Feature-extraction batch. */
  readonly featureBatch?: number;
  /**
   * Precomputed features instead of a model and data: a feature file of `dino features` holding a train and a test
   * split, or a folder of `knn --dump-features` (train.safetensors, test.safetensors).
   */
  readonly features?: string;
}

export interface LinearProbeEvaluation extends ProbeResult {
  readonly model: string;
  /** One line of JSON: {"top1":..,"train_top1":..,"n_train":..,"n_test":..,"epochs":..}. */
  readonly json: string;
  readonly summary: string;
}

/** `npx dino linear`: features through the exported model, then the probe. */
export async function linearProbe(opts: LinearProbeOptions): Promise<LinearProbeEvaluation> {
  if (opts.features !== undefined) {
    const { train, test, classes, name, model } = readFeatureSplits(opts.features);
    const result = await trainLinearProbe(train, test, { ...opts, ...(classes.length ? { numClasses: classes.length } : {}) });
    const epochs = result.epochLosses.length;
    return {
      ...result, model,
      json: JSON.stringify({ top1: result.top1, train_top1: result.trainTop1, n_train: result.n_train, n_test: result.n_test, epochs }),
      summary: `linear probe on ${name} (precomputed features, ${train.dim} dims; ${epochs} epochs, ${result.steps} steps): top-1 ${result.top1.toFixed(2)}% test, ${result.trainTop1.toFixed(2)}% train (${result.n_train} train / ${result.n_test} test images)`,
    };
  }
  const spec: LinearFeatureSpec = { nLastBlocks: opts.nLastBlocks ?? 1, avgpoolPatchtokens: opts.avgpoolPatchtokens ?? false };
  if (!(Number.isInteger(spec.nLastBlocks) && spec.nLastBlocks >= 1)) throw new EvalOptionError('nLastBlocks', spec.nLastBlocks, 'an integer >= 1');
  if (typeof spec.avgpoolPatchtokens !== 'boolean') throw new EvalOptionError('avgpoolPatchtokens', spec.avgpoolPatchtokens, 'true or false');
  // The plain case reads `features` of the default export, exactly as before; the others need DINO's feature.
  const plain = spec.nLastBlocks === 1 && !spec.avgpoolPatchtokens;
  if (!plain && opts.run && !opts.model) checkLinearFeature(spec, readRunConfig(opts.run).backbone.depth); // before exporting
  const model = runModel({ ...opts, ...(plain || opts.model ? {} : { intermediate: spec.nLastBlocks }) });
  const bytes = fs.readFileSync(model);
  const shape = featureModel(bytes, model);
  const linear = linearFeatureOf(shape, spec, model);
  const data = await evalImages(opts, shape);
  const session = await createSession(bytes);
  const extract = (split: EvalSplit, limit: number | undefined) =>
    imageFeatures(session, shape, split.images(limit === undefined ? undefined : evenlySpaced(split.count, limit)), {
      batch: opts.featureBatch ?? 256, linear, ...(opts.log ? { log: opts.log } : {}),
    });
  let train: FeatureSet, test: FeatureSet;
  try {
    train = await extract(data.train, opts.limitTrain);
    test = await extract(data.test, opts.limitTest);
  } finally {
    await session.release();
  }
  const result = await trainLinearProbe(train, test, { ...opts, ...(data.classes.length ? { numClasses: data.classes.length } : {}) });
  const epochs = result.epochLosses.length;
  // DINO's feature settings are reported only when they are not the default, so default results keep their shape.
  const feature = plain ? {} : { n_last_blocks: spec.nLastBlocks, avgpool_patchtokens: spec.avgpoolPatchtokens };
  const featureText = plain ? '' : `, [CLS] of the last ${spec.nLastBlocks} block(s)${spec.avgpoolPatchtokens ? ' + mean patch token' : ''}, ${train.dim} dims`;
  return {
    ...result,
    model,
    json: JSON.stringify({ top1: result.top1, train_top1: result.trainTop1, n_train: result.n_train, n_test: result.n_test, epochs, ...feature }),
    summary: `linear probe on ${data.name} (${epochs} epochs, ${result.steps} steps${featureText}): top-1 ${result.top1.toFixed(2)}% test, ${result.trainTop1.toFixed(2)}% train (${result.n_train} train / ${result.n_test} test images)`,
  };
}
