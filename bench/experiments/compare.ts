/**
 * Compares variants of the fmnist-tiny6 training step (see step-variants.ts), interleaved in one process.
 *
 *   node --import tsx bench/experiments/compare.ts --set session|threads|executor|spinning|memory|prealloc|passthrough|recompute|alt
 *        [--batch 64] [--rounds 8] [--warmup 2] [--threads 0] [--recompute none|mlp|blocks] [--alt DIR[,DIR]] [--alt-session JSON]
 *        [--variants name,name]
 *
 * `--alt DIR[,DIR]` adds a variant per directory whose step graph is built and emitted by the code in DIR (a scratch
 * copy of this repository with a proposed change to dsl/ or models/), with the same state and inputs;
 * `--alt-session JSON` gives those variants ORT session options over the runtime's (e.g. '{"enableMemPattern":true}').
 */
import * as E from 'fp-ts/lib/Either.js';
import { parseArgs } from 'node:util';
import { Prng, emitOnnx, formatError } from '../../dsl/index.ts';
import { stepSignature } from '../../dsl/train/step.ts';
import { loadFashionMnist } from '../../runtime/data/fashion-mnist.ts';
import { getPreset } from '../../runtime/dino/presets.ts';
import { benchAugment } from '../augment.ts';
import { machineInfo } from '../measure.ts';
import { buildStepGraph, midRunScalars, stepInputs } from '../train.ts';
import { passThroughGraph } from '../state-io.ts';
import { parseRecompute } from '../../models/vit.ts';
import { type Variant, compareVariants } from './step-variants.ts';

const { values } = parseArgs({
  options: {
    set: { type: 'string', default: 'session' },
    batch: { type: 'string', default: '64' },
    rounds: { type: 'string', default: '8' },
    warmup: { type: 'string', default: '2' },
    threads: { type: 'string', default: '0' },
    alt: { type: 'string' },
    variants: { type: 'string' },
    'alt-session': { type: 'string', default: '{}' },
    // The baseline's and the alt variants' recomputation (training's default is mlp; `--set recompute` ignores it).
    recompute: { type: 'string', default: 'none' },
  },
});
const batch = Number(values.batch);
const threads = Number(values.threads);
const config = { ...getPreset('fmnist-tiny6'), batch };
const log = (s: string) => process.stderr.write(`${s}\n`);

const recompute = parseRecompute(values.recompute!);
const graph = buildStepGraph(config, { recompute }).graph;
const bytes = emitOnnx(graph, { params: 'inputs' });
if (E.isLeft(bytes)) throw new Error(bytes.left.map(formatError).join('\n'));
const signature = stepSignature(graph);

const sets: Record<string, Variant[]> = {
  session: [
    { name: 'baseline' },
    { name: 'opt-extended', session: { graphOptimizationLevel: 'extended' } },
    { name: 'opt-basic', session: { graphOptimizationLevel: 'basic' } },
  ],
  threads: [{ name: 'threads-0' }, { name: 'threads-1', session: { intraOpNumThreads: 1 } }, { name: 'threads-2', session: { intraOpNumThreads: 2 } }],
  executor: [
    { name: 'baseline' },
    { name: 'threads-1', session: { intraOpNumThreads: 1 } },
    { name: 'parallel-inter2-intra1', session: { executionMode: 'parallel', interOpNumThreads: 2, intraOpNumThreads: 1 } },
  ],
  spinning: [{ name: 'baseline' }, { name: 'no-spinning', session: { extra: { session: { intra_op: { allow_spinning: '0' } } } } }],
  memory: [{ name: 'baseline' }, { name: 'mem-pattern', session: { enableMemPattern: true } }, { name: 'no-arena', session: { enableCpuMemArena: false } }],
  prealloc: [{ name: 'baseline' }, { name: 'prealloc', prealloc: true }],
  alt: [{ name: 'baseline' }],
};
// The state pass-through graph (state-io.ts) with ORT-allocated and with preallocated outputs.
const pass = emitOnnx(passThroughGraph(signature), { params: 'inputs' });
if (E.isLeft(pass)) throw new Error(pass.left.map(formatError).join('\n'));
const passSig = stepSignature(passThroughGraph(signature));
sets['passthrough'] = [
  { name: 'pass-through', model: pass.right, signature: passSig },
  { name: 'pass-through-prealloc', model: pass.right, signature: passSig, prealloc: true },
];
// Activation recomputation (models/vit.ts Recompute): the same step, other graphs.
for (const mode of ['mlp', 'blocks'] as const) {
  const g = buildStepGraph(config, { recompute: mode }).graph;
  const b = emitOnnx(g, { params: 'inputs' });
  if (E.isLeft(b)) throw new Error(b.left.map(formatError).join('\n'));
  (sets['recompute'] ??= [{ name: 'recompute none' }]).push({ name: `recompute ${mode}`, model: b.right, signature: stepSignature(g) });
}
let variants = sets[values.set!];
if (!variants) throw new Error(`unknown --set ${values.set}; one of ${Object.keys(sets).join(', ')}`);
// `--alt DIR[,DIR...]`: one variant per scratch copy.
for (const dir of (values.alt ?? '').split(',').filter(Boolean).map((d) => d.replace(/\/$/, ''))) {
  const altTrain = (await import(`${dir}/bench/train.ts`)) as typeof import('../train.ts');
  const altDsl = (await import(`${dir}/dsl/index.ts`)) as typeof import('../../dsl/index.ts');
  const altGraph = altTrain.buildStepGraph(config, { recompute }).graph;
  const altBytes = altDsl.emitOnnx(altGraph, { params: 'inputs' });
  if (E.isLeft(altBytes)) throw new Error(altBytes.left.map(altDsl.formatError).join('\n'));
  const altSig = altDsl.stepSignature(altGraph);
  const names = (s: typeof signature) => JSON.stringify([s.state.map((x) => x.name), s.updates, s.inputs.map((x) => x.name)]);
  if (names(altSig) !== names(signature)) throw new Error(`the graph from ${dir} has another signature (state, updates or inputs differ)`);
  const session = JSON.parse(values['alt-session']!) as Variant['session'];
  variants = [...variants, { name: `alt(${dir.split('/').pop()})`, model: altBytes.right, signature: altSig, ...(session ? { session } : {}) }];
}
if (values.variants) {
  const keep = new Set(values.variants.split(','));
  variants = variants.filter((v, i) => i === 0 || keep.has(v.name));
}

const dataset = await loadFashionMnist({ limitPerClass: Math.max(10, Math.ceil(batch / 5)) });
const { crops } = await benchAugment(dataset, config.augment, batch, { reps: 1, warmup: 0 });
const inputs = stepInputs(config, crops, Prng.seeded(1));
const scalars = midRunScalars(config);
const m = machineInfo();
log(`${m.nproc} cores ${m.cpuModel}, node ${m.node}, ORT ${m.onnxruntimeNode}; load ${m.loadAverage.toFixed(2)}; batch ${batch}, threads ${threads}, recompute ${recompute}`);
const results = await compareVariants(variants, { bytes: bytes.right, signature, threads, seed: config.seed }, inputs, scalars, {
  warmup: Number(values.warmup), rounds: Number(values.rounds), log,
});
console.log(`${m.date} batch ${batch}, threads ${threads}, recompute ${recompute}, ${values.rounds} interleaved rounds, load ${m.loadAverage.toFixed(2)} -> ${machineInfo().loadAverage.toFixed(2)}`);
for (const r of results) {
  console.log(`${r.name.padEnd(28)} median ${r.medianMs.toFixed(1).padStart(8)} ms  min ${r.minMs.toFixed(1).padStart(8)} ms  paired ratio ${r.pairedRatio.toFixed(3)}  cpu ${r.cpuMedianMs.toFixed(0).padStart(6)} ms (ratio ${r.cpuPairedRatio.toFixed(3)})  loss ${r.loss.toFixed(5)}`);
}
