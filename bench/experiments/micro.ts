/**
 * Micro-benchmarks of one layer's forward + backward, built with the DSL as the step graph builds them, the
 * current formulation against a proposed one, interleaved in one process (many short runs: robust to a busy
 * machine). Shapes are those of fmnist-tiny6 at batch 64 (student global crops: 128 x 50 tokens, width 192).
 *
 *   node --import tsx bench/experiments/micro.ts [--case linear|gelu|layernorm|mlp|all] [--reps 30] [--threads 0]
 */
import * as E from 'fp-ts/lib/Either.js';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import protobuf from 'protobufjs';
import {
  type Tensor, Graph, Scope, add, cost, defineOp, div, erf, exp, formatError, gelu, gemm, gradients, layerNorm, matmul, mul, reduceMean,
  reduceSum, reshape, sub, sumAll, toModelProto, transpose, transposeLast2,
} from '../../dsl/index.ts';
import { ort } from '../../runtime/backend.ts';
import { median, randomFloats } from '../measure.ts';

const root = protobuf.parse(readFileSync(new URL('../../dsl/onnx/onnx.proto', import.meta.url), 'utf8'), { keepCase: true }).root;
const ModelProto = root.lookupType('onnx.ModelProto');

interface Case {
  readonly name: string;
  /** Builds the layer on `x` inside `g`, returns its output. */
  readonly build: (g: Graph, x: Tensor) => Tensor;
  /** Opset to stamp (20 for ONNX Gelu). */
  readonly opset?: number;
}

/** A graph: y = layer(x); loss = sum(y * r); outputs y and the gradients of x and of every parameter. */
function model(c: Case, xShape: readonly number[], yShape: readonly number[]): { bytes: Uint8Array; params: Map<string, readonly number[]> } {
  const g = new Graph(c.name);
  const x = g.input('x', 'float32', xShape);
  const r = g.input('r', 'float32', yShape);
  const y = c.build(g, x);
  const params = [...g.params.values()];
  const grads = gradients(sumAll(mul(y, r)), [x, ...params]);
  if (E.isLeft(grads)) throw new Error(grads.left.map(formatError).join('; '));
  g.output('y', y);
  grads.right.forEach((t, i) => t && g.output(`grad${i}`, t));
  const proto = toModelProto(g, { params: 'inputs' });
  if (E.isLeft(proto)) throw new Error(proto.left.map(formatError).join('; '));
  const m = proto.right as { opset_import: { domain: string; version: number }[] };
  if (c.opset) m.opset_import = [{ domain: '', version: c.opset }];
  return { bytes: ModelProto.encode(ModelProto.fromObject(m)).finish(), params: new Map(params.map((p) => [p.name, p.shape as number[]])) };
}

// ---- the cases ---------------------------------------------------------------------------------------

const ROWS = 128, TOKENS = 50, D = 192;

/** models/layers.ts `linear` today: MatMul with the transposed [out, in] weight, then Add. */
const linearMatMul = (inF: number, outF: number) => (g: Graph, x: Tensor) => {
  const s = new Scope(g, 'lin');
  const w = s.param('weight', [outF, inF], { kind: 'normal', std: 0.02 });
  const b = s.param('bias', [outF], { kind: 'zeros' });
  return add(matmul(x, transposeLast2(w)), b);
};
/** Proposed: one Gemm (transB) on the rows flattened to 2-D. */
const linearGemm = (inF: number, outF: number) => (g: Graph, x: Tensor) => {
  const s = new Scope(g, 'lin');
  const w = s.param('weight', [outF, inF], { kind: 'normal', std: 0.02 });
  const b = s.param('bias', [outF], { kind: 'zeros' });
  const lead = x.shape.slice(0, -1);
  return reshape(gemm(reshape(x, [-1, inF]), w, b, { transB: true }), [...lead, outF]);
};

/** dsl gelu today: Mul by 1/sqrt 2 (ORT does not fuse it). */
const geluMulForm = (_: Graph, x: Tensor) => gelu(x);
/** The same composite with Div by sqrt 2, the form ORT's GeluFusion matches (it fuses only where no backward reads the intermediates). */
const geluDivForm = (_: Graph, x: Tensor) => mul(mul(x, 0.5), add(erf(div(x, Math.SQRT2)), 1));
/** ONNX Gelu (opset 20) with a VJP recomputing Φ(x) + x φ(x) from x. */
const GeluOp = defineOp({
  name: 'MicroGelu20',
  onnxType: 'Gelu',
  flops: cost.elementwise,
  infer: (ins) => [{ dtype: ins[0]!.dtype, shape: ins[0]!.shape }],
  vjp: ({ inputs: [x], grads: [g] }) => {
    const cdf = mul(add(erf(div(x!, Math.SQRT2)), 1), 0.5);
    const xPdf = mul(x!, exp(add(mul(mul(x!, x!), -0.5), -0.5 * Math.log(2 * Math.PI))));
    return [mul(g!, add(cdf, xPdf))];
  },
});
const geluOp = (g: Graph, x: Tensor) => g.apply(GeluOp, [x])[0]!;

/** dsl layerNorm today: the VJP recomputes mean and variance. */
const lnRecompute = (g: Graph, x: Tensor) => {
  const s = new Scope(g, 'ln');
  return layerNorm(x, s.param('weight', [D], { kind: 'ones' }), s.param('bias', [D], { kind: 'zeros' }), 1e-6);
};
/** Proposed: LayerNormalization also outputs Mean and InvStdDev, which the VJP reuses. */
const LnStats = defineOp<{ axis: number; epsilon: number }>({
  name: 'MicroLayerNormStats',
  onnxType: 'LayerNormalization',
  flops: cost.perOutput(7),
  attrTypes: { axis: 'int', epsilon: 'float' },
  outputCount: () => 3,
  infer: (ins, { axis }) => {
    const x = ins[0]!;
    const a = axis < 0 ? axis + x.shape.length : axis;
    const stat = x.shape.map((d, i) => (i < a ? d : 1));
    return [{ dtype: x.dtype, shape: x.shape }, { dtype: 'float32', shape: stat }, { dtype: 'float32', shape: stat }];
  },
  vjp: ({ inputs: [x, scale], outputs: [, mu, rstd], grads: [g] }) => {
    const axes = [x!.rank - 1];
    const batchAxes = x!.shape.slice(0, -1).map((_, i) => i);
    const xhat = mul(sub(x!, mu!), rstd!);
    const gx = mul(g!, scale!);
    const dx = mul(rstd!, sub(sub(gx, reduceMean(gx, axes, true)), mul(xhat, reduceMean(mul(gx, xhat), axes, true))));
    return [dx, sumAllBut(mul(g!, xhat), batchAxes), sumAllBut(g!, batchAxes)];
  },
});
const sumAllBut = (t: Tensor, axes: number[]) => reduceSum(t, axes, false);
const lnStats = (g: Graph, x: Tensor) => {
  const s = new Scope(g, 'ln');
  return g.apply(LnStats, [x, s.param('weight', [D], { kind: 'ones' }), s.param('bias', [D], { kind: 'zeros' })], { axis: -1, epsilon: 1e-6 })[0]!;
};

/** The ViT block's MLP (fc1, GELU, fc2) on tokens x [..., D] as models/vit.ts builds it: token-major products x Wᵀ. */
const mlpTokenMajor = (g: Graph, x: Tensor) => {
  const s = new Scope(g, 'mlp');
  const h = gelu(linearMatMul(D, 4 * D)(g, x));
  const w2 = s.child('fc2').param('weight', [D, 4 * D], { kind: 'normal', std: 0.02 });
  const b2 = s.child('fc2').param('bias', [D], { kind: 'zeros' });
  return add(matmul(h, transposeLast2(w2)), b2);
};
/**
 * Feature-major: the tokens transposed to [D, N] once, products W xᵀ (MLAS ran W[768,192]·xᵀ[192,6400] 24-29% faster
 * than x[6400,192]·Wᵀ in a one-product test: small M, large N), biases as columns, one transpose back.
 */
const mlpFeatureMajor = (g: Graph, x: Tensor) => {
  const s = new Scope(g, 'mlp');
  const lead = x.shape.slice(0, -1);
  const xT = transpose(reshape(x, [-1, D]), [1, 0]); // [D, N]
  const w1 = s.child('fc1').param('weight', [4 * D, D], { kind: 'normal', std: 0.02 });
  const b1 = s.child('fc1').param('bias', [4 * D], { kind: 'zeros' });
  const w2 = s.child('fc2').param('weight', [D, 4 * D], { kind: 'normal', std: 0.02 });
  const b2 = s.child('fc2').param('bias', [D], { kind: 'zeros' });
  const hT = gelu(add(matmul(w1, xT), reshape(b1, [4 * D, 1])));
  const zT = add(matmul(w2, hT), reshape(b2, [D, 1]));
  return reshape(transpose(zT, [1, 0]), [...lead, D]);
};

interface Suite {
  readonly name: string;
  readonly x: readonly number[];
  readonly y: readonly number[];
  readonly cases: readonly Case[];
}

const suites: Record<string, Suite[]> = {
  linear: [
    { name: 'linear 192->768 (fc1)', x: [ROWS, TOKENS, D], y: [ROWS, TOKENS, 4 * D], cases: [{ name: 'MatMul+Transpose+Add', build: linearMatMul(D, 4 * D) }, { name: 'Gemm(transB)', build: linearGemm(D, 4 * D) }] },
    { name: 'linear 768->192 (fc2)', x: [ROWS, TOKENS, 4 * D], y: [ROWS, TOKENS, D], cases: [{ name: 'MatMul+Transpose+Add', build: linearMatMul(4 * D, D) }, { name: 'Gemm(transB)', build: linearGemm(4 * D, D) }] },
    { name: 'linear 192->576 (qkv)', x: [ROWS, TOKENS, D], y: [ROWS, TOKENS, 3 * D], cases: [{ name: 'MatMul+Transpose+Add', build: linearMatMul(D, 3 * D) }, { name: 'Gemm(transB)', build: linearGemm(D, 3 * D) }] },
    { name: 'head 2048->2048 (head.mlp.2)', x: [512, 2048], y: [512, 2048], cases: [{ name: 'MatMul+Transpose+Add', build: linearMatMul(2048, 2048) }, { name: 'Gemm(transB)', build: linearGemm(2048, 2048) }] },
  ],
  gelu: [
    {
      name: 'GELU on [128, 50, 768]', x: [ROWS, TOKENS, 4 * D], y: [ROWS, TOKENS, 4 * D],
      cases: [{ name: 'Mul-form composite', build: geluMulForm }, { name: 'Div-form composite', build: geluDivForm }, { name: 'ONNX Gelu-20 + recompute VJP', build: geluOp, opset: 20 }],
    },
  ],
  mlp: [
    { name: 'ViT MLP 192->768->192 on [128, 50, 192]', x: [ROWS, TOKENS, D], y: [ROWS, TOKENS, D], cases: [{ name: 'token-major (x Wᵀ)', build: mlpTokenMajor, opset: 20 }, { name: 'feature-major (W xᵀ)', build: mlpFeatureMajor, opset: 20 }] },
  ],
  layernorm: [
    { name: 'LayerNorm on [128, 50, 192]', x: [ROWS, TOKENS, D], y: [ROWS, TOKENS, D], cases: [{ name: 'VJP recomputes stats', build: lnRecompute }, { name: 'VJP reuses Mean/InvStdDev', build: lnStats }] },
  ],
};

async function runSuite(suite: Suite, reps: number, threads: number): Promise<string[]> {
  const sessions = [];
  for (const c of suite.cases) {
    const { bytes, params } = model(c, suite.x, suite.y);
    const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all' });
    const n = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
    const feeds: Record<string, ort.Tensor> = {
      x: new ort.Tensor('float32', randomFloats(n(suite.x), 1), suite.x),
      r: new ort.Tensor('float32', randomFloats(n(suite.y), 2), suite.y),
    };
    let seed = 3;
    for (const [name, shape] of params) feeds[name] = new ort.Tensor('float32', randomFloats(n(shape), seed++).map((v) => v * 0.05 + (name.endsWith('weight') && shape.length === 1 ? 1 : 0)), shape);
    sessions.push({ c, session, feeds });
  }
  for (const s of sessions) for (let i = 0; i < 3; i++) await s.session.run(s.feeds);
  const samples = sessions.map(() => [] as number[]);
  for (let r = 0; r < reps; r++) {
    for (let k = 0; k < sessions.length; k++) {
      const i = (k + r) % sessions.length;
      const t0 = performance.now();
      await sessions[i]!.session.run(sessions[i]!.feeds);
      samples[i]!.push(performance.now() - t0);
    }
  }
  const lines = [`${suite.name}: forward + backward, median of ${reps} interleaved runs, ${threads || 'default'} threads`];
  sessions.forEach((s, i) => {
    const ratio = median(samples[i]!.map((ms, r) => ms / samples[0]![r]!));
    lines.push(`  ${s.c.name.padEnd(32)} ${median(samples[i]!).toFixed(2).padStart(8)} ms   paired ratio ${ratio.toFixed(3)}`);
  });
  for (const s of sessions) await s.session.release();
  return lines;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { case: { type: 'string', default: 'all' }, reps: { type: 'string', default: '30' }, threads: { type: 'string', default: '0' } } });
  const names = values.case === 'all' ? Object.keys(suites) : [values.case!];
  for (const name of names) {
    const list = suites[name];
    if (!list) throw new Error(`unknown --case ${name}; one of ${Object.keys(suites).join(', ')}, all`);
    for (const suite of list) console.log((await runSuite(suite, Number(values.reps), Number(values.threads))).join('\n'));
  }
}
