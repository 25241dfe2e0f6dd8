/** `dino bench`, `dino inspect` and `dino spirals`: measuring, describing and demonstrating the framework. */
import { runBench } from '../bench/index.ts';
import { PRECISIONS } from '../dsl/autocast.ts';
import { formatScaleBench, runScaleBench } from '../bench/scale.ts';
import { formatLoaderBench, runLoaderBench } from '../bench/loader.ts';
import { inspectPreset } from '../models/inspect.ts';
import { RECOMPUTE_MODES } from '../models/vit.ts';
import { EXECUTION_PROVIDERS } from '../runtime/ep/ort-select.ts';
import { presetNames as modelPresetNames } from '../models/presets.ts';
import { getPreset as getTrainPreset, presetNames as trainPresetNames } from '../runtime/dino/config.ts';
import { trainSpirals } from '../runtime/examples/spirals.ts';
import { UsageError, defineCommand, didYouMean } from './args.ts';

export const benchCommand = defineCommand(
  {
    name: 'bench',
    summary: 'Training and inference throughput, FLOPs and memory of a preset, measured in one process (ratios compare like with like).',
    options: {
      preset: { kind: 'string', default: 'fmnist-tiny6', placeholder: 'NAME', help: 'training preset to measure' },
      batch: { kind: 'int', min: 1, help: 'images per step (default: the preset\'s)' },
      ep: { kind: 'choice', choices: EXECUTION_PROVIDERS, default: 'cpu', help: 'ONNX Runtime execution provider' },
      steps: { kind: 'int', min: 1, help: 'timed training steps' },
      threads: { kind: 'int', min: 0, help: 'intra-op threads (default: one per core)' },
      recompute: { kind: 'choice', choices: RECOMPUTE_MODES, help: 'activations the backward pass recomputes, as dino train (default mlp)' },
      reduced: { kind: 'flag', help: 'a shorter run (fewer rounds) for a quick look' },
      json: { kind: 'flag', help: 'print one JSON object' },
      'train-only': { kind: 'flag', help: 'only the training step, on synthetic crops (the default for presets other than Fashion-MNIST\'s)' },
      'steps-per-run': { kind: 'int', min: 1, placeholder: 'K', help: 'with --train-only: K steps per ONNX Runtime run (default 1)' },
      precision: { kind: 'choice', choices: PRECISIONS, default: 'fp32', help: 'with --train-only: mixed precision as dino train --precision' },
      set: { kind: 'repeated', placeholder: 'KEY=VALUE', help: 'with --train-only: config overrides, as dino train --set' },
      data: { kind: 'string', placeholder: 'FOLDER', help: 'with --loader-only: the image folder to read' },
      'loader-only': { kind: 'flag', help: 'only the data pipeline on --data FOLDER (read, decode, DINO multi-crop 2 x 224 + 8 x 96): images/s, CPU-ms per image, peak RSS, cores for 700 images/s' },
      'num-workers': { kind: 'int', min: 1, placeholder: 'N', help: 'with --loader-only: loader threads (default: cores - 1)' },
    },
    epilog: `Fashion-MNIST presets get the whole report (MatMul ceiling, training step, state I/O, augmentation, memory,
inference in onnxruntime-node and WASM). Other presets (and --train-only) time the training step alone on
synthetic crops, e.g. DINO's setting on a GPU: dino bench --preset vit_small --ep cuda --batch 64 --steps-per-run 8.
--loader-only --data FOLDER times the data pipeline alone (--steps timed batches, default 8, of --batch, default 64).`,
  },
  async ({ options: o }) => {
    if (o['loader-only'] || o.data !== undefined || o['num-workers'] !== undefined) {
      if (!o['loader-only'] || o.data === undefined) throw new UsageError('the loader bench is --loader-only --data FOLDER [--num-workers N] [--batch B] [--steps BATCHES]', 'bench');
      const r = await runLoaderBench({
        data: o.data, ...(o['num-workers'] !== undefined ? { workers: o['num-workers'] } : {}),
        ...(o.batch !== undefined ? { batch: o.batch } : {}), ...(o.steps !== undefined ? { batches: o.steps } : {}),
        ...(o.reduced ? { batches: 2, warmup: 1 } : {}),
      });
      return void console.log(o.json ? JSON.stringify(r) : formatLoaderBench(r));
    }
    const preset = getTrainPreset(o.preset);
    if (o['train-only'] || preset.backbone.inChans !== 1 || preset.backbone.imgSize !== 28) {
      const r = await runScaleBench({
        preset: o.preset, ep: o.ep, precision: o.precision, set: o.set,
        ...(o.batch !== undefined ? { batch: o.batch } : {}), ...(o.threads !== undefined ? { threads: o.threads } : {}),
        ...(o['steps-per-run'] !== undefined ? { stepsPerRun: o['steps-per-run'] } : {}),
        ...(o.recompute !== undefined ? { recompute: o.recompute } : {}),
        ...(o.steps !== undefined ? { runs: o.steps } : {}), ...(o.reduced ? { runs: 1, ceilingN: 256 } : {}),
      });
      return void console.log(o.json ? JSON.stringify(r) : formatScaleBench(r));
    }
    if (o['steps-per-run'] !== undefined || o.set.length || o.precision !== 'fp32') {
      throw new UsageError('--steps-per-run, --precision and --set apply to --train-only (the full report benches the preset as it is)', 'bench');
    }
    await runBench({
      preset: o.preset, ep: o.ep, json: o.json, reduced: o.reduced,
      ...(o.recompute !== undefined ? { recompute: o.recompute } : {}),
      ...(o.batch !== undefined ? { batch: o.batch } : {}), ...(o.steps !== undefined ? { steps: o.steps } : {}),
      ...(o.threads !== undefined ? { threads: o.threads } : {}),
    });
  },
);

export const inspectCommand = defineCommand(
  {
    name: 'inspect',
    summary: 'Parameter table of a preset (training presets and model presets): shapes, counts, weight-decay flags.',
    options: {
      preset: { kind: 'string', default: 'fmnist-quick', placeholder: 'NAME', help: 'a training preset (dino train --preset) or a model preset (vit_small_p8, resnet50, ...)' },
      json: { kind: 'flag', help: 'print one JSON object' },
    },
  },
  async ({ options: o }) => {
    const training = trainPresetNames();
    if (training.includes(o.preset)) {
      const t = getTrainPreset(o.preset);
      return void console.log(inspectPreset({ name: t.preset, description: t.preset, backbone: t.backbone, head: t.head }, o.json));
    }
    try {
      console.log(inspectPreset(o.preset, o.json));
    } catch {
      const known = [...new Set([...training, ...modelPresetNames()])];
      throw new UsageError(`unknown preset "${o.preset}"${didYouMean(o.preset, known)}; known: ${known.join(', ')} (ViTs also as <name>_p<patch>, e.g. vit_small_p8)`, 'inspect');
    }
  },
);

export const spiralsCommand = defineCommand(
  {
    name: 'spirals',
    summary: 'The smallest end-to-end demo of the compiler: an MLP learns two spirals through compiled step graphs.',
    options: {
      steps: { kind: 'int', min: 1, default: 600, help: 'training steps' },
      seed: { kind: 'int', min: 0, default: 0, help: 'seed' },
    },
  },
  async ({ options: o }) => {
    const r = await trainSpirals({ steps: o.steps, seed: o.seed });
    console.log(`two spirals: loss ${r.losses[0]!.toFixed(3)} -> ${r.losses.at(-1)!.toFixed(3)}, accuracy ${(100 * r.accuracy).toFixed(1)}%`);
  },
);
