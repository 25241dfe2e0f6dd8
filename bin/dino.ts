/**
 * `dino <command>`: parses arguments and dispatches. It stands above dsl/, models/, runtime/, exports/
 * and bench/ (DESIGN §1), so nothing below imports it.
 */
import { parseArgs } from 'node:util';
import { join } from 'node:path';

type Handler = (argv: string[]) => Promise<void>;

const COMMANDS: Record<string, { summary: string; run: Handler }> = {
  start: { summary: 'the default job: train fmnist-quick, export the teacher, k-NN vs the random-init teacher', run: start },
  train: { summary: 'train DINO (see dino train --help)', run: trainCommand },
  inspect: { summary: 'parameter table of a preset', run: inspectCommand },
  spirals: { summary: 'tiny end-to-end demo: an MLP learns two spirals through compiled step graphs', run: spiralsCommand },
};

async function lazy<T>(path: string): Promise<T> {
  return (await import(path)) as T;
}

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`);
  return `usage: dino <command> [options]\n\ncommands:\n${lines.join('\n')}\n\nRun "dino <command> --help" for a command's options.`;
}

const TRAIN_HELP = `usage: dino train [options]

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
  --checkpoint-every K   also save every K steps (the latest is always DIR/checkpoint.safetensors)
  --init FILE            start student and teacher from weights (.safetensors or .pth with DINO names)
  --augment dino|none    none: global crops = whole image, local crops = whole image resized
  --local-crops N        number of local crops
  --set key=value        override any config field, e.g. --set lr=0.002 --set head.outDim=1024 (repeatable)
`;

async function trainCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      preset: { type: 'string', default: 'fmnist-quick' }, steps: { type: 'string' }, batch: { type: 'string' }, seed: { type: 'string' },
      out: { type: 'string' }, data: { type: 'string' }, 'skip-bad-images': { type: 'boolean' }, resume: { type: 'boolean' },
      ep: { type: 'string', default: 'cpu' }, threads: { type: 'string' }, 'checkpoint-every': { type: 'string' }, init: { type: 'string' },
      augment: { type: 'string' }, 'local-crops': { type: 'string' }, set: { type: 'string', multiple: true }, help: { type: 'boolean' },
    },
  });
  if (values.help) return void process.stdout.write(TRAIN_HELP);
  const { resolveTrainConfig } = await lazy<typeof import('../runtime/dino/cli-config.ts')>('../runtime/dino/cli-config.ts');
  const { train } = await lazy<typeof import('../runtime/dino/train.ts')>('../runtime/dino/train.ts');
  const { config, out, initWeights } = await resolveTrainConfig(values);
  const ep = values.ep as 'cpu' | 'cuda' | 'webgpu';
  if (!['cpu', 'cuda', 'webgpu'].includes(ep)) throw new Error(`--ep must be cpu, cuda or webgpu, got "${ep}"`);
  const r = await train({
    config, out, ep,
    ...(values.resume ? { resume: true } : {}),
    ...(values.data ? { data: values.data } : {}),
    ...(values['skip-bad-images'] ? { skipBadImages: true } : {}),
    ...(values.threads ? { threads: intArg('--threads', values.threads) } : {}),
    ...(values['checkpoint-every'] ? { checkpointEvery: intArg('--checkpoint-every', values['checkpoint-every']) } : {}),
    ...(initWeights ? { initWeights } : {}),
    progress: true,
  });
  console.log(`${r.interrupted ? 'interrupted' : 'done'} after ${r.steps} steps; checkpoint ${r.checkpoint}; metrics ${join(out, 'metrics.jsonl')}`);
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
