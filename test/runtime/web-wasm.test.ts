/** The compiled training step runs unchanged in onnxruntime-web (WASM) and agrees with onnxruntime-node. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as E from 'fp-ts/lib/Either.js';
import * as D from '../../dsl/index.ts';
import { Graph, Prng, Scope } from '../../dsl/index.ts';
import { crossEntropy, mlp, twoSpirals } from '../../runtime/examples/spirals.ts';
import { StepRunner } from '../../runtime/step-runner.ts';
import { TrainState } from '../../runtime/state.ts';
import { createWebSession, ortWeb } from '../../runtime/web.ts';
import { ort } from '../../runtime/backend.ts';

test('three AdamW steps of the spirals MLP: WASM and Node agree to 1e-5', async () => {
  const prng = Prng.seeded(3);
  const data = twoSpirals(16, prng);
  const onehot = new Float32Array(64);
  data.y.forEach((c, i) => (onehot[2 * i + c] = 1));
  const g = new Graph('spirals_step');
  const x = g.input('x', 'float32', [32, 2]);
  const t = g.input('target', 'float32', [32, 2]);
  const loss = crossEntropy(mlp(new Scope(g), x, 16), t);
  assert.ok(E.isRight(D.addOptimizerStep(g, { loss, optimizer: { kind: 'adamw' }, clipGrad: 3 })));
  g.output('metric.loss', loss);

  const node = await StepRunner.compile(g, { threads: 1 });
  const state = TrainState.init(node.signature.state, prng);
  const web = await createWebSession(node.onnxBytes);
  // the WASM side keeps its own copy of the state
  const webState = new Map<string, ortWeb.Tensor>();
  for (const name of state.names()) webState.set(name, new ortWeb.Tensor('float32', Float32Array.from(state.values(name)), state.get(name).dims));

  for (let step = 0; step < 3; step++) {
    const scalars = { lr: 0.01, wd: 0.05 };
    const nodeLoss = (await node.run(state, { x: new ort.Tensor('float32', data.x, [32, 2]), target: new ort.Tensor('float32', onehot, [32, 2]) }, scalars))['loss']!;
    const feeds: Record<string, ortWeb.Tensor> = {
      x: new ortWeb.Tensor('float32', data.x, [32, 2]),
      target: new ortWeb.Tensor('float32', onehot, [32, 2]),
      lr: new ortWeb.Tensor('float32', Float32Array.of(scalars.lr), []),
      wd: new ortWeb.Tensor('float32', Float32Array.of(scalars.wd), []),
    };
    for (const [k, v] of webState) feeds[k] = v;
    const out = await web.run(feeds);
    for (const name of node.signature.updates) webState.set(name, out[`next.${name}`]!);
    const webLoss = Number(out['metric.loss']!.data[0]);
    assert.ok(Math.abs(webLoss - nodeLoss) <= 1e-5 * Math.max(1, Math.abs(nodeLoss)), `step ${step}: loss ${webLoss} vs ${nodeLoss}`);
  }
  let maxDiff = 0;
  for (const name of node.signature.updates) {
    const a = state.values(name), b = webState.get(name)!.data as Float32Array;
    for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i]! - b[i]!) / Math.max(1, Math.abs(a[i]!)));
  }
  assert.ok(maxDiff < 1e-5, `state differs by ${maxDiff}`);
  await web.release();
  await node.release();
});

test.run();
