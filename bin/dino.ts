/**
 * `dino <command>`: parses arguments and dispatches. It stands above dsl/, models/, runtime/, exports/
 * and bench/ (DESIGN §1), so nothing below imports it.
 */
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { preselectOrt } from '../runtime/ep/ort-select.ts';

type Handler = (argv: string[]) => Promise<void>;

const COMMANDS: Record<string, { summary: string; run: Handler }> = {
  start: { summary: 'the default job: train fmnist-quick, export the teacher, k-NN vs the random-init teacher', run: start },
  train: { summary: 'train DINO (see dino train --help)', run: trainCommand },
  export: { summary: 'export a teacher (run folder or imported weights) as an inference ONNX model', run: exportCommand },
  knn: { summary: 'weighted k-NN evaluation of a run or an exported model', run: knnCommand },
  linear: { summary: 'linear probe on frozen features (trained with compiled step graphs)', run: linearCommand },
  attention: { summary: 'per-head [CLS] attention maps of an image as PNGs', run: attentionCommand },
  serve: { summary: 'browser demo on 127.0.0.1: attention maps and nearest neighbours in the browser', run: serveCommand },
  report: { summary: 'write DIR/report.html (curves, k-NN table, attention maps)', run: reportCommand },
  bench: { summary: 'training and inference throughput, FLOPs, memory', run: benchCommand },
  inspect: { summary: 'parameter table of a preset', run: inspectCommand },
  spirals: { summary: 'tiny end-to-end demo: an MLP learns two spirals through compiled step graphs', run: spiralsCommand },
  setup: { summary: 'setup cuda: install the CUDA execution provider from npm into .dino/cuda', run: (argv) => gpuCommands().then((m) => m.setupCommand(argv)) },
  doctor: { summary: 'which execution providers (cpu, cuda, webgpu) start here, and how to fix those that do not', run: (argv) => gpuCommands().then((m) => m.doctorCommand(argv)) },
};

const gpuCommands = () => lazy<typeof import('./gpu-commands.ts')>('./gpu-commands.ts');

async function lazy<T>(path: string): Promise<T> {
  return (await import(path)) as T;
}

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`);
  return `usage: dino <command> [options]\n\ncommands:\n${lines.join('\n')}\n\nRun "dino <command> --help" for a command's options.`;
}

const TRAIN_HELP = `usage: dino train [options]

  --preset NAME          fmnist-quick (default), fmnist-tiny6, fmnist-tiny12; RGB: vit_tiny, vit_small, vit_base (+ _p8)
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

async function trainCommand(argv: string[]): Promise<void> {
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
  const gpu = await gpuCommands();
  const dino = gpu.dinoTrainFlags(values);
  const { resolveTrainConfig } = await lazy<typeof import('../runtime/dino/cli-config.ts')>('../runtime/dino/cli-config.ts');
  const { train } = await lazy<typeof import('../runtime/dino/train.ts')>('../runtime/dino/train.ts');
  const { parseRecompute } = await lazy<typeof import('../models/vit.ts')>('../models/vit.ts');
  const recompute = values.recompute !== undefined ? parseRecompute(values.recompute) : undefined;
  const resolved = await resolveTrainConfig({ ...values, preset: dino.preset ?? 'fmnist-quick', set: dino.set });
  const ep = values.ep as 'cpu' | 'cuda' | 'webgpu';
  if (!['cpu', 'cuda', 'webgpu'].includes(ep)) throw new Error(`--ep must be cpu, cuda or webgpu, got "${ep}"`);
  const { config, dataset, stepsPerRun } = await gpu.dinoTrainSetup(resolved.config, values, ep, log);
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

type Exports = typeof import('../exports/index.ts');
const exportsRoom = () => lazy<Exports>('../exports/index.ts');
const log = (m: string) => process.stderr.write(m + '\n');

async function exportCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      run: { type: 'string' }, student: { type: 'boolean' }, preset: { type: 'string' }, weights: { type: 'string' },
      out: { type: 'string' }, 'image-size': { type: 'string' }, help: { type: 'boolean' },
    },
  });
  if (values.help) {
    return void console.log(`usage: dino export (--run DIR [--student] | --preset NAME --weights FILE.safetensors|FILE.pth) [--out FILE.onnx] [--image-size N]

  The model takes images [N, C, H, W] in [0, 1] and returns features [N, D], patch_tokens [N, P, D] and
  cls_attention [N, heads, P]. Without --image-size, H and W may be any multiple of the patch size.`);
  }
  const { exportTeacher } = await exportsRoom();
  const out = values.out ?? (values.run ? join(values.run, values.student ? 'student.onnx' : 'teacher.onnx') : undefined);
  if (!out) throw new Error('--out FILE.onnx is required with --preset/--weights');
  const r = exportTeacher({
    out,
    ...(values.run ? { run: values.run } : {}), ...(values.student ? { student: true } : {}),
    ...(values.preset ? { preset: values.preset } : {}), ...(values.weights ? { weights: values.weights } : {}),
    ...(values['image-size'] ? { imageSize: intArg('--image-size', values['image-size']) } : {}),
  });
  console.log(`wrote ${r.out} (${(r.bytes / 1e6).toFixed(1)} MB) in ${r.seconds.toFixed(1)} s`);
}

async function knnCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      run: { type: 'string' }, model: { type: 'string' }, dataset: { type: 'string', default: 'fmnist' }, data: { type: 'string' },
      json: { type: 'boolean' }, 'limit-train': { type: 'string' }, 'limit-test': { type: 'string' }, help: { type: 'boolean' },
    },
  });
  if (values.help) return void console.log('usage: dino knn (--run DIR | --model FILE.onnx) [--dataset fmnist | --data FOLDER] [--limit-train N] [--limit-test N] [--json]');
  const { knnEvaluate } = await exportsRoom();
  const r = await knnEvaluate({
    ...(values.run ? { run: values.run } : {}), ...(values.model ? { model: values.model } : {}),
    dataset: values.data ?? values.dataset!, log,
    ...(values['limit-train'] ? { limitTrain: intArg('--limit-train', values['limit-train']) } : {}),
    ...(values['limit-test'] ? { limitTest: intArg('--limit-test', values['limit-test']) } : {}),
  });
  console.log(values.json ? r.json : r.table);
}

async function linearCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      run: { type: 'string' }, model: { type: 'string' }, dataset: { type: 'string', default: 'fmnist' }, data: { type: 'string' },
      epochs: { type: 'string' }, json: { type: 'boolean' }, 'limit-train': { type: 'string' }, 'limit-test': { type: 'string' }, help: { type: 'boolean' },
    },
  });
  if (values.help) return void console.log('usage: dino linear (--run DIR | --model FILE.onnx) [--dataset fmnist | --data FOLDER] [--epochs N] [--json]');
  const { linearProbe } = await exportsRoom();
  const r = await linearProbe({
    ...(values.run ? { run: values.run } : {}), ...(values.model ? { model: values.model } : {}),
    dataset: values.data ?? values.dataset!, log,
    ...(values.epochs ? { epochs: intArg('--epochs', values.epochs) } : {}),
    ...(values['limit-train'] ? { limitTrain: intArg('--limit-train', values['limit-train']) } : {}),
    ...(values['limit-test'] ? { limitTest: intArg('--limit-test', values['limit-test']) } : {}),
  });
  console.log(values.json ? r.json : r.summary);
}

async function attentionCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: { model: { type: 'string' }, run: { type: 'string' }, out: { type: 'string', default: 'attention' }, threshold: { type: 'string' }, help: { type: 'boolean' } },
  });
  if (values.help || positionals.length !== 1) return void console.log('usage: dino attention IMAGE (--model FILE.onnx | --run DIR) [--out DIR] [--threshold 0.6]');
  const { attentionMaps } = await exportsRoom();
  const { runModel } = await lazy<typeof import('../exports/knn.ts')>('../exports/knn.ts');
  const model = runModel({ ...(values.run ? { run: values.run } : {}), ...(values.model ? { model: values.model } : {}), log });
  const r = await attentionMaps({ image: positionals[0]!, model, out: values.out!, ...(values.threshold ? { threshold: Number(values.threshold) } : {}) });
  console.log(r.files.join('\n'));
}

async function serveCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { run: { type: 'string' }, model: { type: 'string' }, dataset: { type: 'string', default: 'fmnist' }, port: { type: 'string' }, help: { type: 'boolean' } },
  });
  if (values.help) return void console.log('usage: dino serve (--run DIR | --model FILE.onnx) [--dataset fmnist | FOLDER] [--port N]');
  const { serve } = await exportsRoom();
  const s = await serve({
    ...(values.run ? { run: values.run } : {}), ...(values.model ? { model: values.model } : {}),
    dataset: values.dataset!, log, ...(values.port ? { port: intArg('--port', values.port) } : {}),
  });
  console.log(`serving on ${s.url} (Ctrl-C to stop)`);
}

async function reportCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { run: { type: 'string' }, help: { type: 'boolean' } } });
  if (values.help || !values.run) return void console.log('usage: dino report --run DIR');
  const { writeReport } = await exportsRoom();
  console.log(await writeReport({ run: values.run, log }));
}

async function benchCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      preset: { type: 'string', default: 'fmnist-tiny6' }, batch: { type: 'string' }, ep: { type: 'string', default: 'cpu' },
      json: { type: 'boolean' }, steps: { type: 'string' }, reduced: { type: 'boolean' }, threads: { type: 'string' }, recompute: { type: 'string' }, help: { type: 'boolean' },
    },
  });
  if (values.help) return void console.log('usage: dino bench [--preset fmnist-tiny6] [--batch 64] [--ep cpu|cuda|webgpu] [--steps N] [--threads N] [--recompute none|mlp|blocks] [--reduced] [--json]\n\n  --recompute  activations the backward pass recomputes instead of keeping, as dino train: none, mlp (default: each block\'s GELU output, ~2% more CPU) or blocks (whole blocks: least memory, ~17% more)');
  const { runBench } = await lazy<typeof import('../bench/index.ts')>('../bench/index.ts');
  const { parseRecompute } = await lazy<typeof import('../models/vit.ts')>('../models/vit.ts');
  await runBench({
    preset: values.preset!, ep: values.ep as 'cpu' | 'cuda' | 'webgpu', json: values.json ?? false, reduced: values.reduced ?? false,
    ...(values.recompute !== undefined ? { recompute: parseRecompute(values.recompute) } : {}),
    ...(values.batch ? { batch: intArg('--batch', values.batch) } : {}), ...(values.steps ? { steps: intArg('--steps', values.steps) } : {}),
    ...(values.threads ? { threads: intArg('--threads', values.threads) } : {}),
  });
}

async function inspectCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { preset: { type: 'string', default: 'fmnist-tiny6' }, json: { type: 'boolean' }, help: { type: 'boolean' } } });
  if (values.help) return void console.log('usage: dino inspect --preset NAME [--json]');
  const { inspectPreset } = await lazy<typeof import('../models/inspect.ts')>('../models/inspect.ts');
  console.log(inspectPreset(values.preset!, values.json ?? false));
}

async function spiralsCommand(): Promise<void> {
  const { trainSpirals } = await lazy<typeof import('../runtime/examples/spirals.ts')>('../runtime/examples/spirals.ts');
  const r = await trainSpirals({ steps: 600, seed: 0 });
  console.log(`two spirals: loss ${r.losses[0]!.toFixed(3)} -> ${r.losses.at(-1)!.toFixed(3)}, accuracy ${(100 * r.accuracy).toFixed(1)}%`);
}

async function start(argv: string[]): Promise<void> {
  const { runDefaultJob } = await lazy<typeof import('../runtime/dino/default-job.ts')>('../runtime/dino/default-job.ts');
  await runDefaultJob(argv);
}

export function intArg(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${flag} must be a non-negative integer, got "${v}"`);
  return n;
}

async function main(): Promise<void> {
  const [cmd, ...rest] = process.argv.slice(2);
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') return void console.log(usage());
  preselectOrt(rest); // --ep cuda loads the `dino setup cuda` build, which must be the only ORT in the process
  const c = COMMANDS[cmd];
  if (!c) {
    console.error(`unknown command "${cmd}"\n\n${usage()}`);
    process.exitCode = 2;
    return;
  }
  await c.run(rest);
}

main().catch((e: Error) => {
  console.error(`error: ${e.message}`);
  process.exitCode = 1;
});
