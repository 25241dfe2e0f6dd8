/**
 * Exports on a run folder written by the real training loop (runtime/dino/train.ts, 2 steps of a small ViT):
 * guards the run-folder format (config.json, checkpoint names `teacher.backbone.*`, metrics.jsonl) between the
 * trainer and exports/. The exported teacher equals the checkpoint's teacher run as in training; k-NN and the
 * report run on the folder.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import { Graph, Scope, emitOnnx } from '../../../dsl/index.ts';
import { visionTransformer } from '../../../models/vit.ts';
import { createSession, ort } from '../../../runtime/backend.ts';
import { augmentConfig } from '../../../runtime/data/multicrop.ts';
import { type TrainConfig } from '../../../runtime/dino/config.ts';
import { getPreset } from '../../../runtime/dino/presets.ts';
import { train } from '../../../runtime/dino/train.ts';
import { readSafetensors } from '../../../runtime/io/safetensors.ts';
import { exportTeacher } from '../../../exports/export/teacher.ts';
import { knnEvaluate } from '../../../exports/evaluation/knn.ts';
import { writeReport } from '../../../exports/apps/report.ts';
import { randomImages, relativeError, tempDir } from '../helpers.ts';

const base = getPreset('fmnist-tiny6');
const config: TrainConfig = {
  ...base,
  backbone: { ...base.backbone, depth: 1, embedDim: 48, numHeads: 2 },
  head: { ...base.head, outDim: 64, hiddenDim: 64, bottleneckDim: 32 },
  augment: augmentConfig({ ...base.augment, localCrops: 2 }),
  batch: 4,
  steps: 2,
};

test('a 2-step training run: export = checkpoint teacher as trained; k-NN and report on the folder', async () => {
  const dir = tempDir('real-run');
  const run = path.join(dir, 'run');
  await train({ config, out: run, progress: 'none', log: () => {} });
  const out = exportTeacher({ run, out: path.join(dir, 'teacher.onnx') });
  assert.is(out.info.backbone.embedDim, 48);

  // the checkpoint's teacher through the training-time network (state inputs `teacher.backbone.*`)
  const ckpt = readSafetensors(path.join(run, 'checkpoint.safetensors')).tensors;
  const g = new Graph('training_time');
  const images = g.input('globals', 'float32', [3, 1, 28, 28]);
  g.output('features', visionTransformer(new Scope(g, '', 'teacher.').child('backbone'), images, config.backbone).cls);
  const session = await createSession((emitOnnx(g, { params: 'inputs' }) as E.Right<Uint8Array>).right, { threads: 1 });
  const x = randomImages(3, 1, 28, 28, 3);
  const feeds: Record<string, ort.Tensor> = { globals: new ort.Tensor('float32', x.map((v) => (v - 0.286) / 0.353), [3, 1, 28, 28]) };
  for (const t of g.params.values()) feeds[t.name] = new ort.Tensor('float32', ckpt.get(t.name)!.data as Float32Array, t.shape as number[]);
  const want = (await session.run(feeds))['features']!.data as Float32Array;
  const exported = await createSession(out.out, { threads: 1 });
  const got = (await exported.run({ images: new ort.Tensor('float32', x, [3, 1, 28, 28]) }))['features']!.data as Float32Array;
  const rel = relativeError(got, want);
  assert.ok(rel <= 1e-5, `relative error ${rel}`);
  await session.release();
  await exported.release();

  const knn = await knnEvaluate({ run, limitTrain: 500, limitTest: 100 });
  assert.is(knn.result.n_train, 500);
  assert.ok(fs.existsSync(path.join(run, 'knn.json')));
  const html = fs.readFileSync(await writeReport({ run, attentionImages: 1 }), 'utf8');
  assert.is((html.match(/data-series="loss"/g) ?? []).length, 1);
  assert.match(html, `${knn.result.top1['20']!.toFixed(2)}%`);
  fs.rmSync(dir, { recursive: true, force: true });
});

test.run();
