/**
 * Runs the benchmark without the CLI (same flags as `dino bench`):
 *
 *   node --import tsx bench/run.ts [--preset fmnist-tiny6] [--batch 64] [--ep cpu] [--steps 10] [--threads 0] [--json] [--reduced] [--recompute none|mlp|blocks]
 */
import { parseArgs } from 'node:util';
import { EXECUTION_PROVIDERS, type ExecutionProvider } from '../runtime/ep/records.ts';
import { parseRecompute } from '../models/vit.ts';
import { runBench } from './index.ts';

const { values } = parseArgs({
  options: {
    preset: { type: 'string' },
    batch: { type: 'string' },
    ep: { type: 'string' },
    steps: { type: 'string' },
    threads: { type: 'string' },
    json: { type: 'boolean', default: false },
    reduced: { type: 'boolean', default: false },
    recompute: { type: 'string' },
  },
});
const int = (name: string, v: string | undefined) => {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer, got "${v}"`);
  return n;
};
const ep = values.ep as ExecutionProvider | undefined;
if (ep !== undefined && !(EXECUTION_PROVIDERS as readonly string[]).includes(ep)) throw new Error(`--ep must be one of ${EXECUTION_PROVIDERS.join(', ')}, got "${ep}"`);
await runBench({
  ...(values.preset !== undefined ? { preset: values.preset } : {}),
  ...(values.batch !== undefined ? { batch: int('batch', values.batch)! } : {}),
  ...(ep !== undefined ? { ep } : {}),
  ...(values.steps !== undefined ? { steps: int('steps', values.steps)! } : {}),
  ...(values.threads !== undefined ? { threads: int('threads', values.threads)! } : {}),
  json: values.json,
  reduced: values.reduced,
  ...(values.recompute !== undefined ? { recompute: parseRecompute(values.recompute) } : {}),
});
