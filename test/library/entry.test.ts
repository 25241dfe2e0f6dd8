/**
 * The package entry: `import ... from 'dino-ts'` (and its parts `dino-ts/dsl`, `/models`, `/runtime`, `/exports`)
 * resolves through package.json `exports` (self-reference, as a user's code resolves it), builds and runs a graph;
 * the README's library snippet is examples/library.ts verbatim, and it runs and learns.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import * as dino from 'dino-ts';
import * as dsl from 'dino-ts/dsl';
import * as models from 'dino-ts/models';
import * as runtime from 'dino-ts/runtime';
import * as exportsPart from 'dino-ts/exports';

const ROOT = path.resolve(import.meta.dirname, '../..');

test("'dino-ts' builds a graph, emits ONNX and runs it in onnxruntime-node", async () => {
  const g = new dino.Graph('affine');
  const x = g.input('x', 'float32', [2, 3]);
  const w = g.input('w', 'float32', [3, 2]);
  g.output('y', dino.relu(dino.matmul(x, w)));
  const bytes = dino.emitOnnx(g, { params: 'inputs' });
  if (dino.isLeft(bytes)) throw new Error(bytes.left.map(dino.formatError).join('\n'));
  const session = await dino.createSession(bytes.right);
  const out = await session.run({
    x: new dino.ort.Tensor('float32', Float32Array.from([1, 2, 3, 4, 5, 6]), [2, 3]),
    w: new dino.ort.Tensor('float32', Float32Array.from([1, -1, 0, 1, 1, -1]), [3, 2]),
  });
  // [1 2 3] . [[1 -1] [0 1] [1 -1]] = [4, -2] -> relu [4, 0]; [4 5 6] -> [10, -5] -> [10, 0]
  assert.equal(Array.from(out['y']!.data as Float32Array), [4, 0, 10, 0]);
  await session.release();
});

test('the parts are the same modules as the root, and the public API is there', () => {
  assert.is(dsl.Graph, dino.Graph);
  assert.is(models.visionTransformer, dino.visionTransformer);
  assert.is(models.buildDinoStep, dino.buildDinoStep);
  assert.is(runtime.StepRunner, dino.StepRunner);
  assert.is(exportsPart.exportTeacher, dino.exportTeacher);
  for (const name of ['Graph', 'Scope', 'addOptimizerStep', 'visionTransformer', 'resnet', 'dinoHead', 'buildDinoStep', 'StepRunner', 'TrainState', 'train', 'loadFashionMnist', 'loadImageFolder', 'exportTeacher', 'extractFeatureFile', 'knnEvaluate', 'linearProbe', 'getPreset', 'getModelPreset', 'layerNormModule']) {
    assert.type((dino as Record<string, unknown>)[name], 'function', name);
  }
  // Shared names: the root's getPreset is the training preset, getModelPreset the model's.
  assert.ok('augment' in dino.getPreset('fmnist-tiny6'));
  assert.is(dino.getModelPreset('vit_small').backbone.kind, 'vit');
});

test("README's library snippet is examples/library.ts, which runs: inference, then training lowers the loss", async () => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Use it as a library'));
  const snippet = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
  assert.ok(snippet, 'README has a ts block under "Use it as a library"');
  assert.is(snippet, fs.readFileSync(path.join(ROOT, 'examples/library.ts'), 'utf8'));
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', path.join(ROOT, 'examples/library.ts')], { cwd: ROOT });
  const losses = [...stdout.matchAll(/step (\d+) loss ([\d.]+)/g)].map((m) => Number(m[2]));
  assert.is(losses.length, 5, stdout);
  assert.ok(losses[4]! < losses[0]! / 100, `loss ${losses[0]} -> ${losses[4]}`);
  assert.match(stdout, /^y \[/m);
});

test.run();
