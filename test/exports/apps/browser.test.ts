/**
 * The exported teacher in headless Chromium (Debian's /usr/bin/chromium driven by playwright-core, the page served
 * from 127.0.0.1 by exports/apps/serve.ts), WASM execution provider: parity with onnxruntime-node within 1e-4 for the
 * fixed-size and the dynamic-size export, and the demo page analysing a picked image end to end.
 * WebGPU: browser-webgpu.test.ts. Skipped, with a message, when /usr/bin/chromium is absent (CI installs it: .ci/run).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { l2NormalizeRows } from '../../../exports/evaluation/knn.ts';
import { extractFeatures } from '../../../exports/evaluation/extract-features.ts';
import { loadFashionMnist } from '../../../runtime/data/fashion-mnist.ts';
import { BrowserHarness, CHROMIUM, SKIP_MESSAGE } from '../browser-harness.ts';
import { relativeError } from '../helpers.ts';

if (!fs.existsSync(CHROMIUM)) {
  test('browser tests (skipped)', () => console.log(`    ${SKIP_MESSAGE}`));
} else {
  let h: BrowserHarness;
  test.before(async () => {
    h = await BrowserHarness.start('browser');
  });
  test.after(async () => {
    await h?.close();
  });

  test('onnxruntime-web WASM in Chromium matches onnxruntime-node within 1e-4 (fixed 28x28; dynamic at 40x24)', async () => {
    const page = await h.openPage('?ep=wasm');
    assert.is(await page.evaluate(() => (window as any).dinoDemo.ep), 'wasm');
    await h.compareWithNode(page, h.model, 4, 28, 28, 'chromium wasm', 1e-4);
    await page.close();
    const dyn = await h.openPage('?ep=wasm&model=dynamic.onnx');
    await h.compareWithNode(dyn, h.dynamicModel, 2, 40, 24, 'chromium wasm dynamic', 1e-4);
    await dyn.close();
  });

  test('demo page: pick an image -> attention maps, 60% masks, nearest neighbours, k-NN class (WASM)', async () => {
    const data = await loadFashionMnist({ limitPerClass: 2 });
    const index = 2 * 7 + 1; // a test sneaker (class 7)
    const bytes = data.test.pixels.slice(index * 784, (index + 1) * 784);
    const file = path.join(h.dir, 'sneaker.png');
    await sharp(Buffer.from(bytes), { raw: { width: 28, height: 28, channels: 1 } }).png().toFile(file);

    const page = await h.openPage('?ep=wasm');
    await page.setInputFiles('#file', file);
    await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state ?? ''), undefined, { timeout: 30000 });
    assert.is(await page.evaluate(() => document.body.dataset.state), 'done', await page.evaluate(() => (window as any).__lastError));
    const result = await page.evaluate(() => (window as any).__lastResult);
    assert.equal(result.size, [28, 28]);
    // the page decoded the PNG to the same pixels as Node: same features
    const set = { count: 1, pixels: bytes, labels: Int32Array.of(7) };
    const nodeFeats = await extractFeatures(h.model, { channels: 1, height: 28, width: 28, set });
    const rel = relativeError(result.features, nodeFeats.data);
    h.report.push(`demo page features vs node: ${rel.toExponential(2)}; page time ${result.ms.toFixed(0)} ms`);
    assert.ok(rel <= 1e-4, `features: relative error ${rel}`);
    // nearest neighbours: the gallery's most similar images, most similar first, equal to a Node computation
    const { meta } = h;
    const gallery = new Float32Array(fs.readFileSync(path.join(h.data, 'gallery-features.bin')).buffer.slice(0));
    const q = l2NormalizeRows(nodeFeats.data, meta.dim);
    const sims = Array.from({ length: meta.count }, (_, i) => [gallery.subarray(i * meta.dim, (i + 1) * meta.dim).reduce((s, v, j) => s + v * q[j]!, 0), i] as const)
      .sort((a, b) => b[0] - a[0]);
    assert.is(result.neighbours.length, 20);
    assert.equal(result.neighbours.slice(0, 5).map((nb: { index: number }) => nb.index), sims.slice(0, 5).map(([, i]) => i));
    assert.ok(Math.abs(result.neighbours[0].similarity - sims[0]![0]) < 1e-4);
    assert.is(typeof result.predicted.className, 'string');
    // one figure per head, each with the attention overlay and the mask; every mask keeps >= 60%
    assert.is(await page.locator('#heads figure').count(), 3);
    assert.is(await page.locator('#heads canvas[data-kind="mask"]').count(), 3);
    assert.is(await page.locator('#neighbours figure').count(), 10);
    assert.ok(result.kept.every((k: number) => k >= 0.6), `kept ${result.kept}`);
    h.report.push(`demo page: predicted "${result.predicted.className}", top neighbour "${result.neighbours[0].className}" (${result.neighbours[0].similarity.toFixed(3)})`);
    await page.close();
  });
}

test.run();
