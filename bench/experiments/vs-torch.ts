/**
 * dino-ts against the original PyTorch DINO step on the same CPU, interleaved in one run: a PyTorch process
 * (bench/torch_dino_step.py: DINO's modules via tools/dino_reference.py, fmnist-tiny6, 2 x 28 + 6 x 12 crops, AdamW,
 * clipping, teacher EMA) is started once and kept; then each round runs one PyTorch step, then one dino-ts step
 * (`StepRunner`, the state and crops as training feeds them), alternating which goes first. Reported: each side's
 * median step and images/s, and the median over rounds of (PyTorch step time / dino-ts step time), the paired speed-up.
 *
 *   node --import tsx bench/experiments/vs-torch.ts [--batch 64] [--threads 2] [--rounds 8] [--warmup 2]
 *        [--recompute mlp] [--blas DIR] [--python /usr/bin/python3]
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
import { getPreset } from '../../runtime/dino/config.ts';
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

// The dino-ts side, as bench/train.ts times it.
const config = { ...getPreset('fmnist-tiny6'), batch };
const recompute = parseRecompute(values.recompute!);
const runner = await StepRunner.compile(buildStepGraph(config, { recompute }).graph, { ep: 'cpu', threads });
const state = TrainState.init(runner.signature.state, Prng.seeded(config.seed));
const dataset = await loadFashionMnist({ limitPerClass: Math.max(10, Math.ceil(batch / 5)) });
const { crops } = await benchAugment(dataset, config.augment, batch, { reps: 1, warmup: 0 });
const inputs = stepInputs(config, crops, Prng.seeded(1));
const scalars = midRunScalars(config);
async function oursStep(): Promise<{ ms: number; cpuMs: number }> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const m = await runner.run(state, inputs, scalars);
  if (!Number.isFinite(m['loss'])) throw new Error(`dino-ts step gave loss ${m['loss']}`);
  const c = process.cpuUsage(c0);
  return { ms: performance.now() - t0, cpuMs: (c.user + c.system) / 1000 };
}

const m0 = machineInfo();
log(`${m0.nproc} cores ${m0.cpuModel}, node ${m0.node}, ORT ${m0.onnxruntimeNode}; load ${m0.loadAverage.toFixed(2)}; batch ${batch}, threads ${threads}, recompute ${recompute}`);
await torchSteps(warmup);
for (let i = 0; i < warmup; i++) await oursStep();
const torchMs: number[] = [], oursMs: number[] = [], torchCpu: number[] = [], oursCpu: number[] = [];
for (let r = 0; r < rounds; r++) {
  const runTorch = async () => {
    const t = await torchSteps(1);
    torchMs.push(t.ms[0]!);
    torchCpu.push(t.cpu_ms[0]!);
  };
  const runOurs = async () => {
    const o = await oursStep();
    oursMs.push(o.ms);
    oursCpu.push(o.cpuMs);
  };
  if (r % 2 === 0) { await runTorch(); await runOurs(); } else { await runOurs(); await runTorch(); }
  log(`  round ${r + 1}/${rounds}: PyTorch ${torchMs[r]!.toFixed(0)} ms, dino-ts ${oursMs[r]!.toFixed(0)} ms, speed-up ${(torchMs[r]! / oursMs[r]!).toFixed(3)}`);
}
child.stdin!.write('quit\n');
await runner.release();
const m1 = machineInfo();
const ips = (ms: number) => (batch * 1000) / ms;
const speedups = torchMs.map((t, r) => t / oursMs[r]!);
console.log(`${m0.date} ${m0.nproc} cores ${m0.cpuModel}; load ${m0.loadAverage.toFixed(2)} -> ${m1.loadAverage.toFixed(2)}; batch ${batch}, threads ${threads}, ${rounds} interleaved rounds, recompute ${recompute}`);
console.log(`PyTorch ${ready.torch}: median ${median(torchMs).toFixed(1)} ms (min ${Math.min(...torchMs).toFixed(1)}) = ${ips(median(torchMs)).toFixed(1)} images/s; CPU/wall ${(median(torchCpu) / median(torchMs)).toFixed(2)}`);
console.log(`dino-ts:       median ${median(oursMs).toFixed(1)} ms (min ${Math.min(...oursMs).toFixed(1)}) = ${ips(median(oursMs)).toFixed(1)} images/s; CPU/wall ${(median(oursCpu) / median(oursMs)).toFixed(2)}`);
console.log(`speed-up dino-ts / PyTorch (images/s): paired median ${median(speedups).toFixed(3)} (rounds ${Math.min(...speedups).toFixed(3)}–${Math.max(...speedups).toFixed(3)}); of medians ${(median(torchMs) / median(oursMs)).toFixed(3)}`);
