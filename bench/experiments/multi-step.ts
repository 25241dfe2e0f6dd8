/**
 * K single `StepRunner.run` calls against one `runSteps` call of K steps (the ONNX Loop model of
 * dsl/train/multi-step.ts), fmnist-tiny6 step, same state, crops, drop-path masks and schedule:
 *
 *   node --import tsx bench/experiments/multi-step.ts [--k 4] [--rounds 4] [--warmup 1] [--batch 64] [--threads 0] [--recompute mlp]
 *       time: one process, one runner, two copies of the state; each round does K single runs on one copy and one
 *       K-step run on the other, the order alternating; reported: ms per step of each, the median over rounds of
 *       their ratio (loop / single), and how far the two states are apart at the end.
 *   node --import tsx bench/experiments/multi-step.ts --rss single|loop [--k 4] [--rounds 2] ...
 *       peak RSS of one way alone, in a process of its own (RSS is per process).
 *   --graph passthrough: the same with the step's state pass-through graph (bench/state-io.ts: next.X = X, no
 *       per-step inputs), which isolates what K steps per run save on the state's way in and out.
 */
import { parseArgs } from 'node:util';
import { Prng } from '../../dsl/index.ts';
import { stepSignature } from '../../dsl/train/step.ts';
import { loadFashionMnist } from '../../runtime/data/fashion-mnist.ts';
import { getPreset } from '../../runtime/dino/presets.ts';
import { DEFAULT_RECOMPUTE } from '../../runtime/dino/train.ts';
import { parseRecompute } from '../../models/vit.ts';
import { TrainState } from '../../runtime/state.ts';
import { StepRunner, stackSteps } from '../../runtime/step-runner.ts';
import { benchAugment } from '../augment.ts';
import { machineInfo, median, peakRssMb } from '../measure.ts';
import { passThroughGraph } from '../state-io.ts';
import { buildStepGraph, midRunScalars, stepInputs } from '../train.ts';

const { values } = parseArgs({
  options: {
    k: { type: 'string', default: '4' },
    rounds: { type: 'string' },
    warmup: { type: 'string', default: '1' },
    batch: { type: 'string', default: '64' },
    threads: { type: 'string', default: '0' },
    recompute: { type: 'string' },
    rss: { type: 'string' },
    graph: { type: 'string', default: 'step' },
  },
});
const k = Number(values.k);
const batch = Number(values.batch);
const rssMode = values.rss;
if (rssMode !== undefined && rssMode !== 'single' && rssMode !== 'loop') throw new Error(`--rss single|loop, not ${rssMode}`);
const rounds = Number(values.rounds ?? (rssMode ? 2 : 4));
const recompute = values.recompute !== undefined ? parseRecompute(values.recompute) : DEFAULT_RECOMPUTE;
const config = { ...getPreset('fmnist-tiny6'), batch };
const log = (s: string) => process.stderr.write(`${s}\n`);
const rssMb = () => process.memoryUsage().rss / 2 ** 20;

const dataset = await loadFashionMnist({ limitPerClass: Math.max(10, Math.ceil(batch / 5)) });
const { crops } = await benchAugment(dataset, config.augment, batch, { reps: 1, warmup: 0 });
const rssData = rssMb();

if (values.graph !== 'step' && values.graph !== 'passthrough') throw new Error(`--graph step|passthrough, not ${values.graph}`);
const passThrough = values.graph === 'passthrough';
const stepGraph = buildStepGraph(config, { recompute }).graph;
const graph = passThrough ? passThroughGraph(stepSignature(stepGraph)) : stepGraph;
let t0 = performance.now();
const runner = await StepRunner.compile(graph, { threads: Number(values.threads) });
const compileMs = performance.now() - t0;
t0 = performance.now();
if (rssMode !== 'single') await runner.multiStepSession();
const loopCompileMs = performance.now() - t0;
const rssSession = rssMb();

// K steps of inputs: the same crops, each step its own drop-path masks (as training draws them); a mid-run schedule.
const prng = Prng.seeded(1);
const perStep = Array.from({ length: k }, () => (passThrough ? {} : stepInputs(config, crops, prng)));
const stacked = passThrough ? {} : stackSteps(perStep);
const scalars = Array.from({ length: k }, (_, i) => (passThrough ? {} : midRunScalars(config, i)));

const singleState = TrainState.init(runner.signature.state, Prng.seeded(config.seed));
const loopState = TrainState.init(runner.signature.state, Prng.seeded(config.seed));
const cpuMs = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };

interface Timed { wallMs: number; cpuMs: number; metrics: Record<string, number>[] }
async function timed(f: () => Promise<Record<string, number>[]>): Promise<Timed> {
  const c0 = cpuMs(), w0 = performance.now();
  const metrics = await f();
  return { wallMs: performance.now() - w0, cpuMs: cpuMs() - c0, metrics };
}
const single = () => timed(async () => {
  const out: Record<string, number>[] = [];
  for (let i = 0; i < k; i++) out.push(await runner.run(singleState, perStep[i]!, scalars[i]!));
  return out;
});
const loop = () => timed(() => runner.runSteps(loopState, stacked, scalars));

const m = machineInfo();
log(`${m.date} ${m.nproc} cores ${m.cpuModel}, node ${m.node}, ORT ${m.onnxruntimeNode}; load ${m.loadAverage.toFixed(2)}; ${values.graph} graph, batch ${batch}, K ${k}, recompute ${recompute}, threads ${values.threads}`);
log(`compile: step ${compileMs.toFixed(0)} ms, K-step model ${loopCompileMs.toFixed(0)} ms`);

if (rssMode) {
  const ms: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t = rssMode === 'single' ? await single() : await loop();
    ms.push(t.wallMs / k);
  }
  console.log(JSON.stringify({
    mode: rssMode, graph: values.graph, batch, k, rounds, recompute, rssAfterDataMb: Math.round(rssData), rssAfterSessionsMb: Math.round(rssSession),
    peakRssMb: Math.round(peakRssMb()), msPerStep: ms.map(Math.round), load: [m.loadAverage, machineInfo().loadAverage].map((x) => +x.toFixed(2)),
  }));
} else {
  for (let w = 0; w < Number(values.warmup); w++) { await single(); await loop(); }
  const rows: { single: Timed; loop: Timed }[] = [];
  for (let r = 0; r < rounds; r++) {
    // Alternating order, so a drifting load weighs on both ways alike.
    let s: Timed, l: Timed;
    if (r % 2 === 0) { s = await single(); l = await loop(); } else { l = await loop(); s = await single(); }
    rows.push({ single: s, loop: l });
    log(`round ${r}: single ${(s.wallMs / k).toFixed(1)} ms/step (cpu ${(s.cpuMs / k).toFixed(1)}), loop ${(l.wallMs / k).toFixed(1)} ms/step (cpu ${(l.cpuMs / k).toFixed(1)}), ratio ${(l.wallMs / s.wallMs).toFixed(3)}`);
  }
  let maxAbs = 0, maxRel = 0;
  for (const name of runner.signature.state.map((s) => s.name)) {
    const a = singleState.values(name), b = loopState.values(name);
    let scale = 0;
    for (let i = 0; i < a.length; i++) scale = Math.max(scale, Math.abs(a[i]!));
    for (let i = 0; i < a.length; i++) {
      const d = Math.abs(a[i]! - b[i]!);
      maxAbs = Math.max(maxAbs, d);
      if (scale > 0) maxRel = Math.max(maxRel, d / scale);
    }
  }
  const last = rows.at(-1)!;
  const sameMetrics = JSON.stringify(last.single.metrics) === JSON.stringify(last.loop.metrics);
  const per = (t: Timed) => t.wallMs / k;
  console.log(`fmnist-tiny6 ${values.graph} graph, batch ${batch}, K ${k}, ${rounds} rounds (+${values.warmup} warm-up), recompute ${recompute}, load ${m.loadAverage.toFixed(2)} -> ${machineInfo().loadAverage.toFixed(2)}`);
  console.log(`single run:   median ${median(rows.map((r) => per(r.single))).toFixed(1)} ms/step, cpu ${median(rows.map((r) => r.single.cpuMs / k)).toFixed(1)} ms/step`);
  console.log(`K-step Loop:  median ${median(rows.map((r) => per(r.loop))).toFixed(1)} ms/step, cpu ${median(rows.map((r) => r.loop.cpuMs / k)).toFixed(1)} ms/step`);
  console.log(`paired ratio loop/single: wall ${median(rows.map((r) => r.loop.wallMs / r.single.wallMs)).toFixed(3)}, cpu ${median(rows.map((r) => r.loop.cpuMs / r.single.cpuMs)).toFixed(3)}`);
  console.log(`after ${(Number(values.warmup) + rounds) * k} steps each: state max |diff| ${maxAbs.toExponential(2)} (max relative to a tensor's largest value ${maxRel.toExponential(2)}); last round's metrics ${sameMetrics ? 'identical' : `differ: ${JSON.stringify(last.single.metrics)} vs ${JSON.stringify(last.loop.metrics)}`}`);
  console.log(`compile: step ${compileMs.toFixed(0)} ms, K-step model ${loopCompileMs.toFixed(0)} ms; peak RSS (both ways, two states) ${peakRssMb().toFixed(0)} MiB`);
}
await runner.release();
