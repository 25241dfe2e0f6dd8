/** `dino bench`, `dino inspect` and `dino spirals`: measuring, describing and demonstrating the framework. */
import { parseArgs } from 'node:util';
import { runBench } from '../bench/index.ts';
import { inspectPreset } from '../models/inspect.ts';
import { trainSpirals } from '../runtime/examples/spirals.ts';
import { intArg, recomputeArg } from './flags.ts';

export async function benchCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      preset: { type: 'string', default: 'fmnist-tiny6' }, batch: { type: 'string' }, ep: { type: 'string', default: 'cpu' },
      json: { type: 'boolean' }, steps: { type: 'string' }, reduced: { type: 'boolean' }, threads: { type: 'string' }, recompute: { type: 'string' }, help: { type: 'boolean' },
    },
  });
  if (values.help) return void console.log('usage: dino bench [--preset fmnist-tiny6] [--batch 64] [--ep cpu|cuda|webgpu] [--steps N] [--threads N] [--recompute none|mlp|blocks] [--reduced] [--json]\n\n  --recompute  activations the backward pass recomputes instead of keeping, as dino train: none, mlp (default: each block\'s GELU output, ~2% more CPU) or blocks (whole blocks: least memory, ~17% more)');
  await runBench({
    preset: values.preset!, ep: values.ep as 'cpu' | 'cuda' | 'webgpu', json: values.json ?? false, reduced: values.reduced ?? false,
    ...(values.recompute !== undefined ? { recompute: recomputeArg(values.recompute) } : {}),
    ...(values.batch ? { batch: intArg('--batch', values.batch) } : {}), ...(values.steps ? { steps: intArg('--steps', values.steps) } : {}),
    ...(values.threads ? { threads: intArg('--threads', values.threads) } : {}),
  });
}

export async function inspectCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { preset: { type: 'string', default: 'fmnist-tiny6' }, json: { type: 'boolean' }, help: { type: 'boolean' } } });
  if (values.help) return void console.log('usage: dino inspect --preset NAME [--json]');
  console.log(inspectPreset(values.preset!, values.json ?? false));
}

export async function spiralsCommand(): Promise<void> {
  const r = await trainSpirals({ steps: 600, seed: 0 });
  console.log(`two spirals: loss ${r.losses[0]!.toFixed(3)} -> ${r.losses.at(-1)!.toFixed(3)}, accuracy ${(100 * r.accuracy).toFixed(1)}%`);
}
