/** `dino train`: flags -> a resolved TrainConfig (and initial weights) -> the training loop. */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type TrainConfig, applyOverrides, getPreset } from '../runtime/dino/config.ts';
import { train } from '../runtime/dino/train.ts';
import { readDinoWeights } from '../runtime/io/weights.ts';
import { epArg, intArg, recomputeArg } from './flags.ts';
import { dinoTrainFlags, dinoTrainSetup } from './gpu.ts';

export const TRAIN_HELP = `usage: dino train [options]

  --preset NAME          fmnist-quick (default), fmnist-tiny6, fmnist-tiny12
  --steps N              length of the run; every schedule spans it
  --batch N              images per step (lr scales with batch / 256)
  --seed S               the run's seed (init, shuffling, augmentation, stochastic depth)
  --out DIR              run folder (config.json, metrics.jsonl, checkpoint.safetensors); default runs/<preset>-<seed>
  --data FOLDER          train on an image folder (class subfolders give labels for evaluation)
  --skip-bad-images      skip unreadable images instead of stopping (they are counted in the log)
  --resume               continue the run in --out from its checkpoint
  --ep cpu|cuda|webgpu   ONNX Runtime execution provider (default cpu)
  --threads N            intra-op threads (default: one per core)
  --recompute MODE       activations the backward pass recomputes instead of keeping (same results):
                         none, mlp (default: each block's GELU output, ~2% more CPU) or blocks (least memory, ~17% more)
  --steps-per-run K      K steps per ONNX Runtime call through an ONNX Loop (same results): the state crosses
                         host <-> device once per K steps (for --ep cuda); default 1
  --checkpoint-every K   also save every K steps (the latest is always DIR/checkpoint.safetensors)
  --init FILE            start student and teacher from weights (.safetensors or .pth with DINO names)
  --augment dino|none    none: global crops = whole image, local crops = whole image resized
  --local-crops N        number of local crops
  --set key=value        override any config field, e.g. --set lr=0.002 --set head.outDim=1024 (repeatable)

DINO's flags (main_dino.py names), for RGB image folders:
  --arch NAME            vit_tiny, vit_small or vit_base with DINO's defaults (instead of --preset)
  --patch-size N         ViT patch size (default 16; DINO also publishes 8)
  --image-size N         global crop side and model input (default 224; local crops keep 96/224 of it)
  --local-crops-number N local crops per image (DINO: 8)
  --epochs N             length in passes over the data (steps = N x floor(images / batch)); DINO's warm-ups
                         (lr 10 epochs, last layer frozen 1 epoch) are converted to steps. --arch defaults to 100.
  With --ep cuda, --steps-per-run defaults to the largest K <= 8 dividing --checkpoint-every.
`;

export async function trainCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      preset: { type: 'string' }, steps: { type: 'string' }, batch: { type: 'string' }, seed: { type: 'string' },
      out: { type: 'string' }, data: { type: 'string' }, 'skip-bad-images': { type: 'boolean' }, resume: { type: 'boolean' },
      ep: { type: 'string', default: 'cpu' }, threads: { type: 'string' }, recompute: { type: 'string' }, 'steps-per-run': { type: 'string' }, 'checkpoint-every': { type: 'string' }, init: { type: 'string' },
      augment: { type: 'string' }, 'local-crops': { type: 'string' }, set: { type: 'string', multiple: true }, help: { type: 'boolean' },
      arch: { type: 'string' }, 'patch-size': { type: 'string' }, 'image-size': { type: 'string' }, 'local-crops-number': { type: 'string' }, epochs: { type: 'string' },
    },
  });
  if (values.help) return void process.stdout.write(TRAIN_HELP);
  const recompute = values.recompute !== undefined ? recomputeArg(values.recompute) : undefined;
  const dino = dinoTrainFlags(values);
  const resolved = await resolveTrainConfig({ ...values, preset: dino.preset ?? 'fmnist-quick', set: dino.set });
  const ep = epArg(values.ep!);
  const { config, dataset, stepsPerRun } = await dinoTrainSetup(resolved.config, values, ep, (m) => process.stderr.write(m + '\n'));
  const { out, initWeights } = resolved;
  const r = await train({
    config, out, ep, ...(dataset ? { dataset } : {}), ...(stepsPerRun ? { stepsPerRun } : {}),
    ...(values.resume ? { resume: true } : {}),
    ...(values.data ? { data: values.data } : {}),
    ...(values['skip-bad-images'] ? { skipBadImages: true } : {}),
    ...(values.threads ? { threads: intArg('--threads', values.threads) } : {}),
    ...(recompute ? { recompute } : {}),
    ...(values['steps-per-run'] ? { stepsPerRun: intArg('--steps-per-run', values['steps-per-run']) } : {}),
    ...(values['checkpoint-every'] ? { checkpointEvery: intArg('--checkpoint-every', values['checkpoint-every']) } : {}),
    ...(initWeights ? { initWeights } : {}),
    progress: true,
  });
  console.log(`${r.interrupted ? 'interrupted' : 'done'} after ${r.steps} steps; checkpoint ${r.checkpoint}; metrics ${join(out, 'metrics.jsonl')}`);
}

export interface TrainFlags {
  preset?: string | undefined;
  steps?: string | undefined;
  batch?: string | undefined;
  seed?: string | undefined;
  out?: string | undefined;
  init?: string | undefined;
  augment?: string | undefined;
  'local-crops'?: string | undefined;
  set?: string[] | undefined;
}

/** Flags become `--set` overrides, so one code path checks types and names. */
export async function resolveTrainConfig(flags: TrainFlags): Promise<{ config: TrainConfig; out: string; initWeights?: Map<string, Float32Array> }> {
  const base = getPreset(flags.preset ?? 'fmnist-quick');
  const sets: string[] = [];
  if (flags.steps) sets.push(`steps=${flags.steps}`);
  if (flags.batch) sets.push(`batch=${flags.batch}`);
  if (flags.seed) sets.push(`seed=${flags.seed}`);
  if (flags.augment) sets.push(`augment.augment="${flags.augment}"`);
  if (flags['local-crops']) sets.push(`augment.localCrops=${flags['local-crops']}`);
  sets.push(...(flags.set ?? []));
  const config = applyOverrides(base, sets);
  const out = flags.out ?? join('runs', `${config.preset}-${config.seed}`);
  if (!flags.init) return { config, out };
  return { config, out, initWeights: readInitWeights(flags.init) };
}

/**
 * Student/teacher start weights from a file (runtime/io/weights.ts reads it: the teacher of a checkpoint holding
 * both), named as the step graph names them without the `student.` prefix: `backbone.<key>` and `head.<key>`.
 */
export function readInitWeights(file: string): Map<string, Float32Array> {
  const { backbone, head } = readDinoWeights(file, 'teacher');
  const out = new Map<string, Float32Array>();
  for (const [prefix, tensors] of [['backbone.', backbone], ['head.', head]] as const) {
    for (const [k, t] of tensors) {
      if (t.dtype !== 'float32') throw new Error(`${file}: "${prefix}${k}" is ${t.dtype}; initial weights must be float32`);
      out.set(prefix + k, t.data as Float32Array);
    }
  }
  return out;
}
