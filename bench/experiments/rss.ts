/**
 * Peak RSS of one step variant in a process of its own (RSS is per process, so variants cannot share one):
 *
 *   node --import tsx bench/experiments/rss.ts [--batch 64] [--steps 3] [--mem-pattern 0|1] [--arena 0|1] [--prealloc 0|1] [--alt DIR]
 */
import * as E from 'fp-ts/lib/Either.js';
import { parseArgs } from 'node:util';
import { Prng, emitOnnx, formatError } from '../../dsl/index.ts';
import { stepSignature } from '../../dsl/train/step.ts';
import { loadFashionMnist } from '../../runtime/data/fashion-mnist.ts';
import { getPreset } from '../../runtime/dino/presets.ts';
import { benchAugment } from '../augment.ts';
import { estimateActivations } from '../memory.ts';
import { peakRssMb } from '../measure.ts';
import { buildStepGraph, midRunScalars, stepInputs } from '../train.ts';
import { VariantStep, runtimeSessionOptions } from './step-variants.ts';

const { values } = parseArgs({
  options: {
    batch: { type: 'string', default: '64' },
    steps: { type: 'string', default: '3' },
    'mem-pattern': { type: 'string', default: '0' },
    arena: { type: 'string', default: '1' },
    prealloc: { type: 'string', default: '0' },
    alt: { type: 'string' },
  },
});
const batch = Number(values.batch);
const config = { ...getPreset('fmnist-tiny6'), batch };
const dataset = await loadFashionMnist({ limitPerClass: Math.max(10, Math.ceil(batch / 5)) });
const { crops } = await benchAugment(dataset, config.augment, batch, { reps: 1, warmup: 0 });
const rssData = peakRssMb();
const train = values.alt ? ((await import(`${values.alt.replace(/\/$/, '')}/bench/train.ts`)) as typeof import('../train.ts')) : { buildStepGraph };
const dsl = values.alt ? ((await import(`${values.alt.replace(/\/$/, '')}/dsl/index.ts`)) as typeof import('../../dsl/index.ts')) : { emitOnnx, formatError, stepSignature };
const memory = values.alt ? ((await import(`${values.alt.replace(/\/$/, '')}/bench/memory.ts`)) as typeof import('../memory.ts')) : { estimateActivations };
const graph = train.buildStepGraph(config).graph;
const activations = memory.estimateActivations(graph as any);
const bytes = dsl.emitOnnx(graph as any, { params: 'inputs' });
if (E.isLeft(bytes)) throw new Error(bytes.left.map(formatError).join('\n'));
const options = { ...runtimeSessionOptions(0), enableMemPattern: values['mem-pattern'] === '1', enableCpuMemArena: values.arena === '1' };
const step = await VariantStep.create(bytes.right, dsl.stepSignature(graph as any), options, values.prealloc === '1', config.seed);
const rssSession = peakRssMb();
const inputs = stepInputs(config, crops, Prng.seeded(1));
const scalars = midRunScalars(config);
const ms: number[] = [];
for (let i = 0; i < Number(values.steps); i++) {
  const t0 = performance.now();
  await step.step(inputs, scalars);
  ms.push(performance.now() - t0);
}
console.log(JSON.stringify({
  batch, memPattern: options.enableMemPattern, arena: options.enableCpuMemArena, prealloc: values.prealloc === '1', alt: values.alt ?? null,
  rssAfterDataMb: Math.round(rssData), rssAfterSessionMb: Math.round(rssSession), peakRssMb: Math.round(peakRssMb()),
  activationPeakMb: Math.round(activations.peakBytes / 2 ** 20), stepsMs: ms.map(Math.round),
}));
