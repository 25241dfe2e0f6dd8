/**
 * The exported teacher in headless Chromium (Debian's /usr/bin/chromium driven by playwright-core, page served from
 * 127.0.0.1 by exports/serve.ts): onnxruntime-web WASM matches onnxruntime-node within 1e-4; the demo page analyses
 * a picked image end to end; and, when Chromium offers a WebGPU adapter (SwiftShader), the WebGPU EP matches too.
 * Skipped, with a message, when /usr/bin/chromium is absent (CI installs it: .ci/run).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { chromium, type Browser, type Page } from 'playwright-core';
import { exportTeacher } from '../../exports/teacher.ts';
import { extractFeatures, l2NormalizeRows } from '../../exports/knn.ts';
import { type GalleryMeta, WEB_ROOT, ortWebDist, prepareDemo, startStaticServer, type StaticServer } from '../../exports/serve.ts';
import { createSession, ort } from '../../runtime/backend.ts';
import { loadFashionMnist } from '../../runtime/data/fashion-mnist.ts';
import { makeRun, randomImages, relativeError, tempDir } from './helpers.ts';

const CHROMIUM = '/usr/bin/chromium';
const FLAGS = [
  '--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run',
  '--enable-unsafe-webgpu', '--enable-unsafe-swiftshader', '--use-webgpu-adapter=swiftshader',
];

if (!fs.existsSync(CHROMIUM)) {
  test('browser tests (skipped)', () => {
    console.log(`    SKIPPED: ${CHROMIUM} not found; install Debian's chromium (apt-get install -y chromium) to run the browser parity and demo tests`);
  });
} else {
  const DIR = tempDir('browser');
  const MODEL = path.join(DIR, 'teacher.onnx');
  const DATA = path.join(DIR, 'demo');
  const report: string[] = [];
  let server: StaticServer, browser: Browser, meta: GalleryMeta;

  async function openPage(query: string): Promise<Page> {
    const page = await browser.newPage();
    page.on('pageerror', (e) => console.log(`    page error: ${e.message}`));
    await page.goto(`${server.url}/${query}`);
    await page.waitForFunction(() => (window as any).dinoDemo !== undefined);
    await page.evaluate(() => (window as any).dinoDemo.ready);
    return page;
  }

  test.before(async () => {
    const run = makeRun(path.join(DIR, 'run'));
    exportTeacher({ run: run.dir, out: MODEL });
    meta = await prepareDemo({ model: MODEL, dataset: 'fmnist', dir: DATA, gallerySize: 300 });
    server = await startStaticServer({ mounts: { '/': WEB_ROOT, '/ort/': ortWebDist(), '/data/': DATA }, port: 0 });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
  });

  test.after(async () => {
    await browser?.close();
    await server?.close();
    console.log(report.map((l) => `    ${l}`).join('\n'));
    fs.rmSync(DIR, { recursive: true, force: true });
  });

  test('onnxruntime-web WASM in Chromium matches onnxruntime-node within 1e-4 (features, patch attention)', async () => {
    const page = await openPage('?ep=wasm');
    assert.is(await page.evaluate(() => (window as any).dinoDemo.ep), 'wasm');
    const n = 4, x = randomImages(n, 1, 28, 28, 11);
    const web = await page.evaluate(async ([data, dims]) => (window as any).dinoDemo.runRaw(data, dims), [Array.from(x), [n, 1, 28, 28]] as const);
    const session = await createSession(MODEL, { threads: 1 });
    const node = await session.run({ images: new ort.Tensor('float32', x, [n, 1, 28, 28]) });
    for (const name of ['features', 'cls_attention'] as const) {
      const rel = relativeError(web[name], node[name]!.data as Float32Array);
      report.push(`chromium wasm vs node ${name}: ${rel.toExponential(2)}`);
      assert.ok(rel <= 1e-4, `${name}: relative error ${rel}`);
    }
    await session.release();
    await page.close();
  });

  test('demo page: pick an image -> attention maps, 60% masks, nearest neighbours, k-NN class (WASM)', async () => {
    const data = await loadFashionMnist({ limitPerClass: 2 });
    const index = 2 * 7 + 1; // a test sneaker (class 7)
    const bytes = Uint8Array.from(data.test.pixels.subarray(index * 784, (index + 1) * 784), (v) => Math.round(v * 255));
    const file = path.join(DIR, 'sneaker.png');
    await sharp(Buffer.from(bytes), { raw: { width: 28, height: 28, channels: 1 } }).png().toFile(file);

    const page = await openPage('?ep=wasm');
    await page.setInputFiles('#file', file);
    await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state ?? ''), undefined, { timeout: 30000 });
    assert.is(await page.evaluate(() => document.body.dataset.state), 'done', await page.evaluate(() => (window as any).__lastError));
    const result = await page.evaluate(() => (window as any).__lastResult);
    assert.equal(result.size, [28, 28]);
    // the page decoded the PNG to the same pixels as Node: same features
    const set = { count: 1, pixels: Float32Array.from(bytes, (v) => v / 255), labels: Int32Array.of(7) };
    const nodeFeats = await extractFeatures(MODEL, { channels: 1, height: 28, width: 28, set });
    const rel = relativeError(result.features, nodeFeats.data);
    report.push(`demo page features vs node: ${rel.toExponential(2)}; page time ${result.ms.toFixed(0)} ms`);
    assert.ok(rel <= 1e-4, `features: relative error ${rel}`);
    // nearest neighbours: the gallery's most similar images, most similar first, equal to a Node computation
    const gallery = new Float32Array(fs.readFileSync(path.join(DATA, 'gallery-features.bin')).buffer.slice(0));
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
    report.push(`demo page: predicted "${result.predicted.className}", top neighbour "${result.neighbours[0].className}" (${result.neighbours[0].similarity.toFixed(3)})`);
    await page.close();
  });

  test('WebGPU EP (SwiftShader) in Chromium matches onnxruntime-node, when an adapter exists', async () => {
    const page = await browser.newPage();
    await page.goto(`${server.url}/`);
    const hasAdapter = await page.evaluate(async () => !!((navigator as any).gpu && (await (navigator as any).gpu.requestAdapter())));
    await page.close();
    if (!hasAdapter) {
      report.push('WebGPU: no adapter in this Chromium (SKIPPED)');
      return;
    }
    const gpu = await openPage('?ep=webgpu');
    assert.is(await gpu.evaluate(() => (window as any).dinoDemo.ep), 'webgpu');
    const n = 2, x = randomImages(n, 1, 28, 28, 12);
    const web = await gpu.evaluate(async ([data, dims]) => (window as any).dinoDemo.runRaw(data, dims), [Array.from(x), [n, 1, 28, 28]] as const);
    const session = await createSession(MODEL, { threads: 1 });
    const node = await session.run({ images: new ort.Tensor('float32', x, [n, 1, 28, 28]) });
    for (const name of ['features', 'cls_attention'] as const) {
      const rel = relativeError(web[name], node[name]!.data as Float32Array);
      report.push(`chromium webgpu (swiftshader) vs node ${name}: ${rel.toExponential(2)}`);
      assert.ok(rel <= 1e-3, `${name}: relative error ${rel}`);
    }
    await session.release();
    await gpu.close();
  });
}

test.run();
