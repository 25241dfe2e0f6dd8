/**
 * K steps in one run (`StepRunner.runSteps`, the ONNX Loop model of dsl/train/multi-step.ts) against K
 * single `run` calls: same final state, same per-step metrics. Both paths run the same kernels on the same
 * values in the same order (threads: 1), so the comparison is bit for bit.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as E from 'fp-ts/lib/Either.js';
import * as D from '../../dsl/index.ts';
import { Graph, IR_VERSION, OPSET, Prng, Scope, decodeOnnx, formatError, multiStepModel } from '../../dsl/index.ts';
import { buildDinoStep } from '../../models/dino-step.ts';
import { sampleDropPathMasks } from '../../models/vit.ts';
import { crossEntropy, mlp, twoSpirals } from '../../runtime/examples/spirals.ts';
import { ort } from '../../runtime/backend.ts';
import { TrainState } from '../../runtime/state.ts';
import { StepRunner, stackSteps } from '../../runtime/step-runner.ts';

const POINTS = 40;
const BATCH = 2 * POINTS;

/** The spirals MLP step of runtime/examples/spirals.ts, with an accuracy metric too. */
async function spiralsRunner(): Promise<StepRunner> {
  const g = new Graph('spirals_step');
  const x = g.input('x', 'float32', [BATCH, 2]);
  const t = g.input('target', 'float32', [BATCH, 2]);
  const logits = mlp(new Scope(g), x, 16);
  const loss = crossEntropy(logits, t);
  const step = D.addOptimizerStep(g, { loss, optimizer: { kind: 'adamw' }, clipGrad: 1 });
  if (E.isLeft(step)) throw new Error(step.left.map(formatError).join('\n'));
  g.output('metric.loss', loss);
  g.output('metric.grad_norm', step.right.gradNorm);
  return StepRunner.compile(g, { threads: 1 });
}

/** Step i's batch: spirals drawn with their own noise, so every step sees other data. */
function spiralsBatch(i: number): Record<string, ort.Tensor> {
  const d = twoSpirals(POINTS, Prng.seeded(100 + i));
  const onehot = new Float32Array(BATCH * 2);
  d.y.forEach((c, j) => (onehot[2 * j + c] = 1));
  return { x: new ort.Tensor('float32', d.x, [BATCH, 2]), target: new ort.Tensor('float32', onehot, [BATCH, 2]) };
}

const spiralsScalars = (i: number) => ({ lr: 0.02 / (1 + i), wd: 1e-3 * (1 + i) });

/** Names of state tensors whose values differ between `a` and `b` (bitwise). */
function differing(a: TrainState, b: TrainState): string[] {
  return a.names().filter((name) => {
    const u = a.values(name), v = b.values(name);
    return u.length !== v.length || u.some((x, i) => !Object.is(x, v[i]));
  });
}

test('the K-step model: one Loop, trip count `steps`, default domain, opset 20, IR 9', async () => {
  const runner = await spiralsRunner();
  const m = decodeOnnx(multiStepModel(runner.onnxBytes, runner.signature));
  assert.is(m.ir_version, IR_VERSION);
  assert.equal(m.opset_import, [{ version: OPSET }]);
  assert.equal(m.graph.node.map((n: any) => n.op_type), ['Loop']);
  const body = m.graph.node[0].attribute[0].g;
  assert.ok(body.node.every((n: any) => !n.domain), 'a body node outside the default domain');
  const inputs = m.graph.input.map((i: any) => i.name);
  assert.is(inputs[0], 'steps');
  assert.ok(runner.signature.state.every((s) => inputs.includes(s.name)));
  const lr = m.graph.input.find((i: any) => i.name === 'lr');
  assert.equal(lr.type.tensor_type.shape.dim, [{ dim_param: 'steps' }]);
  const x = m.graph.input.find((i: any) => i.name === 'x');
  assert.equal(x.type.tensor_type.shape.dim, [{ dim_param: 'steps' }, { dim_value: BATCH }, { dim_value: 2 }]);
  assert.equal(m.graph.output.map((o: any) => o.name).filter((n: string) => n.startsWith('metric.')), ['metric.loss', 'metric.grad_norm']);
  await runner.release();
});

test('spirals MLP: 5 steps in one run = 5 single runs, state and per-step metrics bit for bit; one session serves K = 2 too', async () => {
  const runner = await spiralsRunner();
  const single = TrainState.init(runner.signature.state, Prng.seeded(0));
  const looped = TrainState.init(runner.signature.state, Prng.seeded(0));
  const batches = Array.from({ length: 7 }, (_, i) => spiralsBatch(i));
  const scalars = batches.map((_, i) => spiralsScalars(i));

  const expected: Record<string, number>[] = [];
  for (let i = 0; i < 7; i++) expected.push(await runner.run(single, batches[i]!, scalars[i]!));
  const got = [
    ...(await runner.runSteps(looped, stackSteps(batches.slice(0, 5)), scalars.slice(0, 5))),
    ...(await runner.runSteps(looped, stackSteps(batches.slice(5)), scalars.slice(5))),
  ];
  assert.equal(got, expected);
  assert.equal(differing(single, looped), []);
  assert.ok(expected[6]!['loss']! < expected[0]!['loss']!, 'the steps did not train');
  await runner.release();
});

test('runSteps names what is wrong: stacked length, missing input, missing scalar, unknown input, dtype; the builder names a signature mismatch', async () => {
  const runner = await spiralsRunner();
  const state = TrainState.init(runner.signature.state, Prng.seeded(0));
  const before = new Map(state.names().map((n) => [n, state.get(n)]));
  const three = stackSteps([0, 1, 2].map(spiralsBatch));
  const scalars3 = [0, 1, 2].map(spiralsScalars);
  const rejects = async (f: () => Promise<unknown>, pattern: RegExp) => {
    try {
      await f();
    } catch (e) {
      assert.match((e as Error).message, pattern);
      return;
    }
    assert.unreachable(`no error (expected ${pattern})`);
  };
  await rejects(() => runner.runSteps(state, three, scalars3.slice(0, 2)), /stacked input "x" is float32\[3,80,2\], expected float32\[2,80,2\]/);
  await rejects(() => runner.runSteps(state, { target: three['target']! }, scalars3), /step input "x" was not given \(expected float32\[3,80,2\]/);
  await rejects(() => runner.runSteps(state, three, [scalars3[0]!, { lr: 0.01 }, scalars3[2]!]), /scalar "wd" is missing at step 1 of 3/);
  await rejects(() => runner.runSteps(state, { ...three, y: three['x']! }, scalars3), /"y" is not a per-step input/);
  await rejects(() => runner.runSteps(state, spiralsBatch(0), [spiralsScalars(0)]), /stacked input "x" is float32\[80,2\], expected float32\[1,80,2\]/);
  await rejects(() => runner.runSteps(state, { ...three, x: new ort.Tensor('float64', new Float64Array(3 * BATCH * 2), [3, BATCH, 2]) }, scalars3), /stacked input "x" is float64\[3,80,2\], expected float32\[3,80,2\]/);
  await rejects(() => runner.runSteps(state, three, []), /no steps asked for/);
  await rejects(async () => multiStepModel(runner.onnxBytes, { ...runner.signature, updates: [...runner.signature.updates, 'fc9.weight'] }), /K-step model: the step model has no output "next.fc9.weight"/);
  await rejects(async () => stackSteps([spiralsBatch(0), { x: spiralsBatch(1)['x']! }]), /step 1 has no "target"/);
  // Nothing ran: the state is the one it was.
  assert.ok(state.names().every((n) => state.get(n) === before.get(n)));
  await runner.release();
});

test('tiny DINO step (drop path, local crops, frozen last layer then free, frozen weight_g): 3 steps in one run = 3 single runs, bit for bit', async () => {
  const backbone = {
    kind: 'vit' as const, imgSize: 16, patchSize: 8, inChans: 3, embedDim: 16, depth: 2, numHeads: 2, mlpRatio: 2, qkvBias: true,
    layerNormEps: 1e-6, dropPathRate: 0.3,
  };
  const b = 2;
  const built = buildDinoStep({
    backbone, head: { outDim: 32, hiddenDim: 24, bottleneckDim: 8, nlayers: 3, useBn: false, normLastLayer: true },
    batch: b, globalSize: 16, localSize: 8, localCrops: 2, studentTemp: 0.1, centerMomentum: 0.9, clipGrad: 3,
  });
  if (E.isLeft(built)) throw new Error(built.left.map(formatError).join('\n'));
  const runner = await StepRunner.compile(built.right.graph, { threads: 1 });
  // weight_g is frozen: the body reads it from the outer scope instead of carrying it.
  assert.ok(runner.signature.state.some((s) => s.name.endsWith('weight_g') && !runner.signature.updates.includes(s.name)));
  const single = TrainState.init(runner.signature.state, Prng.seeded(3));
  const looped = TrainState.init(runner.signature.state, Prng.seeded(3));
  const prng = Prng.seeded(9);
  const uniform = (n: number) => Float32Array.from({ length: n }, () => prng.normal());
  const batches = [0, 1, 2].map(() => ({
    globals: new ort.Tensor('float32', uniform(2 * b * 3 * 16 * 16), [2 * b, 3, 16, 16]),
    locals: new ort.Tensor('float32', uniform(2 * b * 3 * 8 * 8), [2 * b, 3, 8, 8]),
    'drop_path.globals': new ort.Tensor('float32', sampleDropPathMasks(prng, backbone, 2 * b), [2, 2, 2 * b]),
    'drop_path.locals': new ort.Tensor('float32', sampleDropPathMasks(prng, backbone, 2 * b), [2, 2, 2 * b]),
  }));
  const scalars = [0, 1, 2].map((i) => ({ lr: 1e-3 * (i + 1), wd: 0.04 + 0.01 * i, momentum: 0.99 - 0.01 * i, teacher_temp: 0.04 + 0.005 * i, 'gate.last_layer': i === 0 ? 0 : 1 }));

  const expected: Record<string, number>[] = [];
  for (let i = 0; i < 3; i++) expected.push(await runner.run(single, batches[i]!, scalars[i]!));
  const got = await runner.runSteps(looped, stackSteps(batches), scalars);
  assert.equal(got, expected);
  assert.equal(differing(single, looped), []);
  assert.ok(differing(single, TrainState.init(runner.signature.state, Prng.seeded(3))).length > 0, 'the steps changed nothing');
  await runner.release();
});

test.run();
