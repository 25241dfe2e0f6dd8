import { Graph, Prng, Scope, StepRunner, type Tensor, TrainState, addOptimizerStep, createSession, emitOnnx, formatError, gelu, initialValues, isLeft, linear, meanAll, mul, ort, paramSpecs, sub } from 'dino-ts';

// A model in the DSL: a function of a Scope; parameters are named by module path (fc1.weight, fc1.bias, ...).
const mlp = (s: Scope, x: Tensor) => linear(s.child('fc2'), gelu(linear(s.child('fc1'), x, 4, 32)), 32, 1);

// Inference: the graph emitted as ONNX with its weights baked in, run by onnxruntime-node.
const net = new Graph('mlp');
net.output('y', mlp(new Scope(net), net.input('x', 'float32', ['batch', 4])));
const weights = initialValues(paramSpecs(net), Prng.seeded(0));
const onnx = emitOnnx(net, { params: { values: weights } });
if (isLeft(onnx)) throw new Error(onnx.left.map(formatError).join('\n'));
const session = await createSession(onnx.right);
const { y } = await session.run({ x: new ort.Tensor('float32', Float32Array.from([1, 2, 3, 4, 0, 0, 0, 0]), [2, 4]) });
console.log('y', Array.from(y!.data as Float32Array));

// Training: the same model and a loss, compiled with AdamW into one step graph; StepRunner runs it, TrainState holds the weights.
const step = new Graph('mlp_step');
const x = step.input('x', 'float32', [16, 4]), target = step.input('target', 'float32', [16, 1]);
const err = sub(mlp(new Scope(step), x), target);
const loss = meanAll(mul(err, err));
const compiled = addOptimizerStep(step, { loss, optimizer: { kind: 'adamw' } });
if (isLeft(compiled)) throw new Error(compiled.left.map(formatError).join('\n'));
step.output('metric.loss', loss);
const runner = await StepRunner.compile(step);
const state = TrainState.init(runner.signature.state, Prng.seeded(0), weights); // start from the weights above
const xs = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i)); // 16 rows of 4
const ys = Float32Array.from({ length: 16 }, (_, r) => xs[4 * r]! - xs[4 * r + 3]!); // learn x0 - x3
const feeds = { x: new ort.Tensor('float32', xs, [16, 4]), target: new ort.Tensor('float32', ys, [16, 1]) };
for (let i = 0; i <= 100; i++) {
  const metrics = await runner.run(state, feeds, { lr: 0.01, wd: 0 });
  if (i % 25 === 0) console.log(`step ${i} loss ${metrics['loss']!.toFixed(5)}`);
}
await runner.release();
