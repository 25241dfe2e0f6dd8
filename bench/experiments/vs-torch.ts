/**
 * dino-ts against the original PyTorch DINO step on the same CPU, interleaved in one run: a PyTorch process
 * (bench/torch_dino_step.py: DINO's modules via tools/dino_reference.py, fmnist-tiny6, 2 x 28 + 6 x 12 crops, AdamW,
 * clipping, teacher EMA) is started once and kept; then each round runs one PyTorch step, then one dino-ts step
 * (`StepRunner`, the state and crops as training feeds them), alternating which goes first. Reported: each side's
 * median step and images/s, and the median over rounds of (PyTorch step time / dino-ts step time), the paired speed-up.
 *
 *   node --import tsx bench/experiments/vs-torch.ts [--batch 64] [--threads 2] [--rounds 8] [--warmup 2]
 *        [--recompute mlp] [--blas DIR] [--python /usr/bin/python3] [--alt DIR[,DIR]]
 *
 * `--alt DIR[,DIR]` adds a dino-ts variant per directory, whose step graph is built by the code in DIR (a copy of this
 * repository at another commit, e.g. `git archive <commit> | tar -x -C DIR` plus a node_modules link): before and
 * after a change, against the same PyTorch process, in one run. The order within a round rotates.
 *
 * `--threads T` applies to both: ORT's intra-op threads, and torch.set_num_threads(T) with OPENBLAS_NUM_THREADS and
 * OMP_NUM_THREADS = T for the child. `--blas DIR` puts DIR first on the child's LD_LIBRARY_PATH: a directory holding
 * an OpenBLAS `libblas.so.3` (Debian: `apt-get download libopenblas0-pthread && dpkg -x libopenblas0-pthread_*.deb
 * /tmp/openblas`, then DIR = /tmp/openblas/usr/lib/x86_64-linux-gnu/openblas-pthread), for a machine whose system
 * libblas.so.3 is the netlib reference BLAS. Augmentation is excluded on both sides.
 */
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { Prng } from '../../dsl/index.ts';
import { loadFashionMnist } from '../../runtime/data/fashion-mnist.ts';
import { getPreset } from '../../runtime/dino/presets.ts';
import { TrainState } from '../../runtime/state.ts';
import { StepRunner } from '../../runtime/step-runner.ts';
import { parseRecompute } from '../../models/vit.ts';
import { benchAugment } from '../augment.ts';
import { machineInfo, median } from '../measure.ts';
import { buildStepGraph, midRunScalars, stepInputs } from '../train.ts';

const { values } = parseArgs({
  options: {
    batch: { type: 'string', default: '64' },
    threads: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '8' },
    warmup: { type: 'string', default: '2' },
    recompute: { type: 'string', default: 'mlp' },
    blas: { type: 'string' },
    python: { type: 'string', default: '/usr/bin/python3' },
    alt: { type: 'string' },
  },
});
const batch = Number(values.batch), threads = Number(values.threads), rounds = Number(values.rounds), warmup = Number(values.warmup);
const log = (s: string) => process.stderr.write(`${s}\n`);

// The PyTorch side: one long-lived process answering `run N` with its step times.
const env: NodeJS.ProcessEnv = { ...process.env, OPENBLAS_NUM_THREADS: String(threads), OMP_NUM_THREADS: String(threads) };
if (values.blas) env['LD_LIBRARY_PATH'] = [values.blas, process.env['LD_LIBRARY_PATH']].filter(Boolean).join(':');
const script = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'torch_dino_step.py');
const child = spawn(values.python!, [script, '--batch', String(batch), '--threads', String(threads)], { env, stdio: ['pipe', 'pipe', 'inherit'] });
const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
async function reply(): Promise<any> {
  const next = await lines.next();
  if (next.done) throw new Error('the PyTorch process ended early (is torch installed for this python?)');
  return JSON.parse(next.value);
}
async function torchSteps(n: number): Promise<{ ms: number[]; cpu_ms: number[]; loss: number }> {
  child.stdin!.write(`run ${n}\n`);
  return reply();
}
const ready = await reply();
log(`PyTorch ${ready.torch}, ${ready.threads} threads${values.blas ? `, BLAS from ${values.blas}` : ''}`);

// The dino-ts side, as bench/train.ts times it: this tree, and one variant per `--alt` directory.
const config = { ...getPreset('fmnist-tiny6'), batch };
const recompute = parseRecompute(values.recompute!);
const dataset = await loadFashionMnist({ limitPerClass: Math.max(10, Math.ceil(batch / 5)) });
const { crops } = await benchAugment(dataset, config.augment, batch, { reps: 1, warmup: 0 });
const inputs = stepInputs(config, crops, Prng.seeded(1));
const scalars = midRunScalars(config);
interface Ours { readonly name: string; readonly runner: StepRunner; readonly state: TrainState }
const ours: Ours[] = [];
for (const dir of ['', ...(values.alt ?? '').split(',').filter(Boolean).map((d) => d.replace(/\/$/, ''))]) {
  const build = dir ? ((await import(`${dir}/bench/train.ts`)) as typeof import('../train.ts')).buildStepGraph : buildStepGraph;
  const runner = await StepRunner.compile(build(config, { recompute }).graph, { ep: 'cpu', threads });
  ours.push({ name: dir ? `dino-ts(${path.basename(dir)})` : 'dino-ts', runner, state: TrainState.init(runner.signature.state, Prng.seeded(config.seed)) });
}
async function oursStep(o: Ours): Promise<{ ms: number; cpuMs: number }> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const m = await o.runner.run(o.state, inputs, scalars);
  if (!Number.isFinite(m['loss'])) throw new Error(`${o.name} step gave loss ${m['loss']}`);
  const c = process.cpuUsage(c0);
  return { ms: performance.now() - t0, cpuMs: (c.user + c.system) / 1000 };
}

const m0 = machineInfo();
log(`${m0.nproc} cores ${m0.cpuModel}, node ${m0.node}, ORT ${m0.onnxruntimeNode}; load ${m0.loadAverage.toFixed(2)}; batch ${batch}, threads ${threads}, recompute ${recompute}`);
await torchSteps(warmup);
for (let i = 0; i < warmup; i++) for (const o of ours) await oursStep(o);
// Column 0 is PyTorch, then the dino-ts variants.
const names = ['PyTorch', ...ours.map((o) => o.name)];
const ms: number[][] = names.map(() => []), cpu: number[][] = names.map(() => []);
for (let r = 0; r < rounds; r++) {
  for (let k = 0; k < names.length; k++) {
    const i = (k + r) % names.length;
    if (i === 0) {
      const t = await torchSteps(1);
      ms[0]!.push(t.ms[0]!);
      cpu[0]!.push(t.cpu_ms[0]!);
    } else {
      const o = await oursStep(ours[i - 1]!);
      ms[i]!.push(o.ms);
      cpu[i]!.push(o.cpuMs);
    }
  }
  log(`  round ${r + 1}/${rounds}: ${names.map((n, i) => `${n} ${ms[i]![r]!.toFixed(0)} ms`).join(', ')}`);
}
child.stdin!.write('quit\n');
for (const o of ours) await o.runner.release();
const m1 = machineInfo();
const ips = (t: number) => (batch * 1000) / t;
console.log(`${m0.date} ${m0.nproc} cores ${m0.cpuModel}; load ${m0.loadAverage.toFixed(2)} -> ${m1.loadAverage.toFixed(2)}; batch ${batch}, threads ${threads}, ${rounds} interleaved rounds, recompute ${recompute}; PyTorch ${ready.torch}${values.blas ? ' with the BLAS of --blas' : ''}`);
for (const [i, n] of names.entries()) {
  const speedups = ms[0]!.map((t, r) => t / ms[i]![r]!);
  const cpuSpeedups = cpu[0]!.map((t, r) => t / cpu[i]![r]!);
  console.log(`${n.padEnd(22)} median ${median(ms[i]!).toFixed(1).padStart(8)} ms (min ${Math.min(...ms[i]!).toFixed(1)}) = ${ips(median(ms[i]!)).toFixed(1).padStart(5)} images/s; CPU/wall ${(median(cpu[i]!) / median(ms[i]!)).toFixed(2)}` +
    (i === 0 ? '' : `; speed-up over PyTorch: paired median ${median(speedups).toFixed(3)} (rounds ${Math.min(...speedups).toFixed(3)}-${Math.max(...speedups).toFixed(3)}), CPU time ${median(cpuSpeedups).toFixed(3)}`));
}
