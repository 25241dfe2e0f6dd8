/** exports/apps/attention.ts: DINO's 60%-mass mask (keeps ≥ 60%, minimal, the largest values), and the PNGs of an image. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { Prng } from '../../../dsl/index.ts';
import { attentionMask, attentionMaps, keptMass, modelInputSize } from '../../../exports/apps/attention.ts';
import type { ExportInfo } from '../../../exports/export/teacher.ts';
import { exportTeacher } from '../../../exports/export/teacher.ts';
import { createSession, ort } from '../../../runtime/backend.ts';
import { loadFashionMnist } from '../../../runtime/data/fashion-mnist.ts';
import { makeRun, tempDir } from '../helpers.ts';

test('hand example: [0.5, 0.3, 0.1, 0.1] keeps the first two (0.8 of the mass; 0.5 alone is < 0.6)', () => {
  assert.equal([...attentionMask([0.5, 0.3, 0.1, 0.1])], [1, 1, 0, 0]);
  assert.equal([...attentionMask([1, 3, 5, 1])], [0, 1, 1, 0], 'unnormalised input: 5/10 < 0.6, 8/10 >= 0.6');
  assert.equal([...attentionMask([0.25, 0.25, 0.25, 0.25])], [0, 1, 1, 1], 'uniform: 3 of 4 patches (0.75); ties keep the later index as DINO\'s sort');
});

test('random attention: the mask keeps ≥ 60% of the mass, is minimal, and holds the largest values', () => {
  const prng = Prng.seeded(4);
  for (let trial = 0; trial < 200; trial++) {
    const n = 1 + prng.int(196);
    const sharpness = 0.2 + 5 * prng.uniform();
    const a = Float32Array.from({ length: n }, () => Math.exp(sharpness * prng.normal()));
    for (const t of [0.6, 0.3, 0.9]) {
      const mask = attentionMask(a, t);
      const kept = keptMass(a, mask);
      assert.ok(kept >= t - 1e-6, `trial ${trial}: kept ${kept} < ${t}`);
      let smallestKept = Infinity, largestDropped = -Infinity, smallestIndex = -1;
      a.forEach((v, i) => {
        if (mask[i]) {
          if (v < smallestKept) [smallestKept, smallestIndex] = [v, i];
        } else largestDropped = Math.max(largestDropped, v);
      });
      assert.ok(smallestKept >= largestDropped, 'kept values are the largest');
      const fewer = Uint8Array.from(mask);
      fewer[smallestIndex] = 0;
      assert.ok(keptMass(a, fewer) < t + 1e-6, `trial ${trial}: dropping the smallest kept value still keeps ${keptMass(a, fewer)} >= ${t}`);
    }
  }
});

test('attentionMaps on a Fashion-MNIST image: PNGs per head, masks, attention equal to the model output', async () => {
  const dir = tempDir('attention');
  const run = makeRun(path.join(dir, 'run'));
  const model = path.join(dir, 'teacher.onnx');
  exportTeacher({ run: run.dir, out: model });
  const data = await loadFashionMnist({ limitPerClass: 1 });
  const pixels = data.test.pixels.subarray(0, 784);
  const imageFile = path.join(dir, 'shirt.png');
  await sharp(Buffer.from(pixels), { raw: { width: 28, height: 28, channels: 1 } }).png().toFile(imageFile);

  const res = await attentionMaps({ image: imageFile, model, out: path.join(dir, 'maps') });
  assert.is(res.heads.length, 3);
  assert.is(res.rows, 7);
  assert.is(res.cols, 7);
  const names = res.files.map((f) => path.basename(f));
  for (const n of ['image.png', 'attn-head0.png', 'attn-head2.png', 'mask-head1.png', 'attn-mean.png', 'attention.json']) assert.ok(names.includes(n), n);
  const meta = await sharp(res.files.find((f) => f.endsWith('attn-head0.png'))!).metadata();
  assert.equal([meta.width, meta.height], [224, 224]);

  // the maps are the model's cls_attention, renormalised over the patches
  const session = await createSession(model, { threads: 1 });
  const out = await session.run({ images: new ort.Tensor('float32', Float32Array.from(pixels, (v) => v / 255), [1, 1, 28, 28]) });
  const att = out['cls_attention']!.data as Float32Array;
  for (let h = 0; h < 3; h++) {
    const row = att.subarray(h * 49, (h + 1) * 49);
    const total = row.reduce((s, v) => s + v, 0);
    for (let i = 0; i < 49; i++) assert.ok(Math.abs(res.heads[h]![i]! - row[i]! / total) < 1e-6, `head ${h} patch ${i}`);
    assert.ok(keptMass(res.heads[h]!, res.masks[h]!) >= 0.6);
  }
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'maps', 'attention.json'), 'utf8'));
  assert.is(json.heads.length, 3);
  assert.ok(json.heads.every((h: { kept_mass: number }) => h.kept_mass >= 0.6));
  await session.release();

  try {
    await attentionMaps({ image: path.join(dir, 'missing.png'), model, out: dir });
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, 'missing.png');
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

test('dynamic-size model: a 100x60 image keeps its shape (25x15 patches); large images are scaled to 480 px', async () => {
  const info = { imageSize: null, backbone: { patchSize: 16 } } as unknown as ExportInfo;
  assert.equal(modelInputSize(info, 3000, 4000), [352, 480]);
  assert.equal(modelInputSize(info, 100, 60), [96, 48]);
  assert.equal(modelInputSize({ ...info, imageSize: [28, 28] }, 3000, 4000), [28, 28]);
  const dir = tempDir('attention-dyn');
  const run = makeRun(path.join(dir, 'run'));
  const model = path.join(dir, 'dynamic.onnx');
  exportTeacher({ run: run.dir, out: model });
  const image = path.join(dir, 'wide.png');
  const gradient = Buffer.from(Uint8Array.from({ length: 100 * 60 * 3 }, (_, i) => (i * 7) % 256));
  await sharp(gradient, { raw: { width: 60, height: 100, channels: 3 } }).png().toFile(image);
  const res = await attentionMaps({ image, model, out: path.join(dir, 'maps') });
  assert.equal([res.rows, res.cols], [25, 15]);
  assert.is(res.heads[0]!.length, 25 * 15);
  const meta = await sharp(path.join(dir, 'maps', 'mask-head2.png')).metadata();
  assert.equal([meta.width, meta.height], [60 * 3, 100 * 3]);
  fs.rmSync(dir, { recursive: true, force: true });
});

test.run();
