/**
 * The benchmark end to end in its reduced mode (no timing assertions: only that every figure is produced and
 * consistent), plus the pieces it rests on: the ViT FLOP count against the closed form, the activation-memory
 * estimate and the ORT profile summary on small hand-made inputs.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Graph, Scope, add, matmul, relu } from '../../dsl/index.ts';
import { countFlops } from '../../dsl/flops.ts';
import { visionTransformer } from '../../models/vit.ts';
import { getPreset } from '../../runtime/dino/presets.ts';
import { type BenchResult, runBench } from '../../bench/index.ts';
import { estimateActivations } from '../../bench/memory.ts';
import { summarizeProfile } from '../../bench/profile.ts';
import { passThroughGraph } from '../../bench/state-io.ts';
import { formatScaleBench, runScaleBench } from '../../bench/scale.ts';

test('ViT forward MatMul FLOPs equal the closed form', () => {
  const cfg = getPreset('fmnist-tiny6').backbone; // 28 px, patch 4: 49 patches + CLS, D 192, depth 6, MLP 768
  const g = new Graph();
  const images = g.input('images', 'float32', ['batch', 1, 28, 28]);
  g.output('f', visionTransformer(new Scope(g), images, cfg).cls);
  const b = 3, t = 50, d = 192, p = 49, patchIn = 16;
  const perBlock = 2 * t * d * 3 * d + 2 * 2 * t * t * d + 2 * t * d * d + 2 * 2 * t * d * 4 * d; // qkv, QK^T + PV, proj, fc1 + fc2
  const expected = b * (2 * p * patchIn * d + 6 * perBlock);
  assert.is(countFlops(g, { dims: { batch: b } }).byOp['MatMul'], expected);
});

test('activation estimate: a tensor lives until its last consumer; outputs live to the end', () => {
  const g = new Graph();
  const x = g.input('x', 'float32', [256]); // 1 KiB per tensor
  const a = relu(x); // a: used by b and by d
  const b = relu(a);
  const c = relu(b);
  g.output('d', add(c, a));
  relu(c); // dead: not counted
  const e = estimateActivations(g);
  // A node's output is allocated before its inputs are freed: while c runs a, b, c are alive (3 KiB, all
  // transient); b dies after c; while d runs a, c, d are alive (3 KiB, of which 2 transient).
  assert.is(e.peakBytes, 3 * 1024);
  assert.is(e.peakTransientBytes, 3 * 1024);
  assert.is(e.outputBytes, 1024);
  assert.is(e.totalBytes, 4 * 1024);
});

test('profile summary: per op, per phase, warm-up runs skipped', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-test-'));
  try {
    const node = (name: string, op: string, ts: number, dur: number) => ({ cat: 'Node', name: `${name}_kernel_time`, ts, dur, ph: 'X', args: { op_name: op } });
    const events = [
      { cat: 'Session', name: 'model_run', ts: 0, dur: 5000, ph: 'X' },
      node('blocks.0/MatMul', 'MatMul', 10, 4000), // warm-up run: skipped
      { cat: 'Session', name: 'model_run', ts: 10000, dur: 3000, ph: 'X' },
      node('blocks.0/MatMul', 'MatMul', 10010, 1500),
      node('grad/blocks.0/MatMul', 'MatMul', 11600, 1000),
      node('optimizer/Mul', 'Mul', 12700, 500),
    ];
    const file = path.join(dir, 'p.json');
    writeFileSync(file, JSON.stringify(events));
    const s = summarizeProfile(file, 1);
    assert.is(s.runs, 1);
    assert.is(s.modelRunMs, 3);
    assert.is(s.nodeMs, 3);
    assert.equal(s.byOp.map((r) => [r.name, r.ms, r.count]), [['MatMul', 2.5, 2], ['Mul', 0.5, 1]]);
    assert.equal(s.byPhase.map((r) => [r.name, r.ms]), [['forward', 1.5], ['backward', 1], ['update', 0.5]]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the state pass-through graph returns exactly the updated state', () => {
  const g = new Graph();
  const s = new Scope(g);
  const w = s.param('w', [2, 2], { kind: 'zeros' });
  const frozen = s.param('frozen', [2], { kind: 'ones' }, { trainable: false });
  g.output('next.w', add(matmul(w, w), frozen));
  const pass = passThroughGraph({ state: [...g.params.values()].map((t) => ({ ...(t.source as any).spec })), updates: ['w'], inputs: [], metrics: [] });
  assert.equal([...pass.params.keys()], ['w', 'frozen']);
  assert.equal([...pass.outputs.keys()], ['next.w']);
});

test('reduced bench runs end to end and prints one JSON line with every figure', async () => {
  const lines: string[] = [];
  const result = await runBench({ reduced: true, json: true, out: (l) => lines.push(l), log: () => {} });
  assert.is(lines.length, 1);
  const parsed = JSON.parse(lines[0]!) as BenchResult;
  for (const key of ['train_images_per_s', 'train_gflops_per_s', 'ceiling_gflops_per_s', 'state_io_fraction', 'augment_ms_per_batch', 'peak_rss_mb'] as const) {
    assert.type(parsed[key], 'number', key);
    assert.ok(Number.isFinite(parsed[key]) && parsed[key] >= 0, `${key} = ${parsed[key]}`);
  }
  assert.ok(parsed.train_images_per_s > 0 && parsed.ceiling_gflops_per_s > 0 && parsed.peak_rss_mb > 0);
  assert.ok(parsed.state_io_fraction < 1, `state I/O ${parsed.state_io_fraction} of a step that includes it`);
  for (const backend of ['ort-node', 'ort-web-wasm'] as const) {
    assert.equal(Object.keys(parsed.infer_images_per_s[backend]).sort(), ['1', '2']);
    for (const v of Object.values(parsed.infer_images_per_s[backend])) assert.ok(v > 0);
  }
  // The FLOPs behind GFLOP/s are the step graph's own count, and GFLOP/s follows from it and the step time.
  const phases = parsed.train_flops_by_phase;
  assert.ok(phases['forward']! > 0 && phases['backward']! > phases['forward']! && phases['update']! > 0);
  assert.ok(Math.abs(phases['forward']! + phases['backward']! + phases['update']! - parsed.train_flops_per_step) < 1);
  assert.ok(Math.abs(parsed.train_gflops_per_s - parsed.train_flops_per_step / (parsed.train_step_ms * 1e6)) < 1e-9 * parsed.train_gflops_per_s + 1e-12);
  assert.is(parsed.batch, 2);
  assert.is(result.reduced, true);
});

test('the scale bench (training step alone, K steps per run, a precision) runs and reports every figure', async () => {
  const set = ['backbone.depth=2', 'head.outDim=256', 'augment.localCrops=2'];
  const r = await runScaleBench({ preset: 'fmnist-tiny6', batch: 4, ep: 'cpu', threads: 1, stepsPerRun: 2, runs: 1, ceilingN: 128, set, precision: 'fp16' });
  assert.equal([r.batch, r.steps_per_run, r.steps_timed, r.precision], [4, 2, 2, 'fp16']);
  for (const k of ['step_ms', 'images_per_s', 'tflop_per_step', 'tflops_per_s', 'ceiling_fp32_tflops_per_s', 'state_mib', 'state_round_trip_share'] as const) {
    assert.ok(Number.isFinite(r[k]) && r[k] > 0, `${k} = ${r[k]}`);
  }
  assert.ok(Number.isFinite(r.last_loss));
  assert.match(formatScaleBench(r), /fmnist-tiny6, batch 4, ep cpu, fp16, 2 step\(s\) per run/);
});

test.run();
