/**
 * The `dino export --format hf` folder in headless Chromium through transformers.js's browser build
 * (`@huggingface/transformers/dist/transformers.js`, which bundles its own onnxruntime-web): AutoProcessor +
 * AutoModel and pipeline('image-feature-extraction') on PNG files served from 127.0.0.1, remote models off, the
 * WASM files served locally, no request leaving 127.0.0.1. Their features equal the plain export's through
 * onnxruntime-node within 1e-5 (measured: 7e-7). Skipped, with a message, when /usr/bin/chromium is absent.
 */
import { test } from 'uvu';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';
import { exportHf } from '../../../exports/export/hf.ts';
import { exportTeacher } from '../../../exports/export/teacher.ts';
import { startStaticServer } from '../../../exports/apps/serve.ts';
import { CHROMIUM, CHROMIUM_FLAGS, SKIP_MESSAGE } from '../browser-harness.ts';
import { makeRun, tempDir } from '../helpers.ts';
import { type ClientResult, assertSameFeatures, plainExportOutputs, referencePixels, writeTestImages } from './hf-helpers.ts';

/** transformers.js's package folder, and the onnxruntime-web its browser build was made with (for the .wasm files). */
const TRANSFORMERS = path.resolve(path.dirname(createRequire(import.meta.url).resolve('@huggingface/transformers')), '..');
const TRANSFORMERS_ORT_WEB = path.dirname(createRequire(path.join(TRANSFORMERS, 'package.json')).resolve('onnxruntime-web'));

/** The page: what a site using transformers.js from its own server would run, offline. */
const PAGE = `<!doctype html><meta charset="utf-8"><title>transformers.js + dino export --format hf</title>
<script type="module">
import { AutoModel, AutoProcessor, RawImage, env, pipeline } from '/transformers/transformers.js';
env.allowRemoteModels = false;
env.allowLocalModels = true;
env.localModelPath = '/models/';
env.useBrowserCache = false;
env.backends.onnx.wasm.wasmPaths = '/ort/';
const plain = (t) => ({ dims: [...t.dims], data: Array.from(t.data) });
window.runHf = async (modelId, urls) => {
  const processor = await AutoProcessor.from_pretrained(modelId);
  const model = await AutoModel.from_pretrained(modelId);
  const inputs = await processor(await Promise.all(urls.map((u) => RawImage.read(u))));
  const outputs = await model(inputs);
  const extractor = await pipeline('image-feature-extraction', modelId);
  const result = {
    device: model.sessions.model.config.device,
    pixel_values: plain(inputs.pixel_values), last_hidden_state: plain(outputs.last_hidden_state),
    pooler_output: plain(outputs.pooler_output), cls_attention: plain(outputs.cls_attention),
    pipeline: plain(await extractor(urls)), pipeline_pooled: plain(await extractor(urls, { pool: true })),
  };
  await model.dispose();
  await extractor.dispose();
  return result;
};
window.hfReady = true;
</script>`;

if (!fs.existsSync(CHROMIUM)) {
  test('transformers.js in the browser (skipped)', () => console.log(`    ${SKIP_MESSAGE}`));
} else {
  test('Chromium, transformers.js web build: AutoModel and the pipeline on the hf folder equal dino export through onnxruntime-node (≤ 1e-5)', async () => {
    const tmp = tempDir('browser-hf');
    const report: string[] = [];
    const run = makeRun(path.join(tmp, 'run'));
    const models = path.join(tmp, 'models'), page = path.join(tmp, 'page');
    exportHf({ run: run.dir, out: path.join(models, 'dino-fmnist') });
    const plainModel = exportTeacher({ run: run.dir, out: path.join(tmp, 'plain.onnx') }).out;
    const images = await writeTestImages(models, 28, [1, 3], 17);
    fs.mkdirSync(page);
    fs.writeFileSync(path.join(page, 'index.html'), PAGE);
    const server = await startStaticServer({ mounts: { '/': page, '/transformers/': path.join(TRANSFORMERS, 'dist'), '/ort/': TRANSFORMERS_ORT_WEB, '/models/': models }, port: 0 });
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS });
    try {
      const tab = await browser.newPage();
      const errors: string[] = [];
      tab.on('pageerror', (e) => errors.push(e.message));
      tab.on('requestfailed', (r) => errors.push(`request failed: ${r.url()}`));
      // Offline: every request the page makes goes to the local server.
      tab.on('request', (r) => { if (!r.url().startsWith(server.url) && !r.url().startsWith('blob:') && !r.url().startsWith('data:')) errors.push(`request outside 127.0.0.1: ${r.url()}`); });
      await tab.goto(`${server.url}/`);
      await tab.waitForFunction(() => (window as any).hfReady === true, undefined, { timeout: 30000 });
      const t0 = performance.now();
      const urls = images.map((im) => `${server.url}/models/${path.basename(im.file)}`);
      const got = await tab.evaluate(async ([id, u]) => (window as any).runHf(id, u), ['dino-fmnist', urls] as const) as ClientResult & { device: string };
      report.push(`Chromium transformers.js (device ${got.device}): load + 3 runs in ${(performance.now() - t0).toFixed(0)} ms`);
      if (errors.length) throw new Error(`page errors: ${errors.join('; ')}`);
      const want = await plainExportOutputs(plainModel, referencePixels(images, 1), [images.length, 1, 28, 28]);
      const cfg = run.config.backbone;
      assertSameFeatures(got, want, { n: images.length, patches: 49, dim: cfg.embedDim, heads: cfg.numHeads }, 'Chromium', report, 1e-5);
    } finally {
      await browser.close();
      await server.close();
      console.log(report.map((l) => `    ${l}`).join('\n'));
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
}

test.run();
