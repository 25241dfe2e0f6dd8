/**
 * Shared setup of the headless-Chromium tests: a run's teacher exported (fixed 28 px as the demo's model.onnx,
 * plus dynamic.onnx), the demo data for 300 gallery images, the static server on 127.0.0.1, and Debian's
 * /usr/bin/chromium launched by playwright-core with the flags docs/ARCHITECTURE.md ("Browser WebGPU") lists.
 */
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { exportTeacher } from '../../exports/export/teacher.ts';
import { type GalleryMeta, WEB_ROOT, ortWebDist, prepareDemo, startStaticServer, type StaticServer } from '../../exports/apps/serve.ts';
import { createSession, ort } from '../../runtime/backend.ts';
import { makeRun, randomImages, relativeError, tempDir } from './helpers.ts';

import { CHROMIUM, CHROMIUM_FLAGS } from '../../tools/chromium.ts';

export { CHROMIUM, CHROMIUM_FLAGS };
export const SKIP_MESSAGE = `SKIPPED: ${CHROMIUM} not found; install Debian's chromium (apt-get install -y chromium) to run the browser tests`;

export class BrowserHarness {
  readonly report: string[] = [];
  private constructor(
    readonly dir: string,
    readonly model: string,
    readonly dynamicModel: string,
    readonly data: string,
    readonly meta: GalleryMeta,
    readonly server: StaticServer,
    readonly browser: Browser,
  ) {}

  static async start(name: string): Promise<BrowserHarness> {
    const dir = tempDir(name);
    const model = path.join(dir, 'teacher.onnx'), data = path.join(dir, 'demo');
    const run = makeRun(path.join(dir, 'run'));
    exportTeacher({ run: run.dir, out: model, dynamicSize: false });
    const meta = await prepareDemo({ model, dataset: 'fmnist', dir: data, gallerySize: 300 });
    const dynamicModel = path.join(data, 'dynamic.onnx');
    exportTeacher({ run: run.dir, out: dynamicModel, dynamicSize: true });
    const server = await startStaticServer({ mounts: { '/': WEB_ROOT, '/ort/': ortWebDist(), '/data/': data }, port: 0 });
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS });
    return new BrowserHarness(dir, model, dynamicModel, data, meta, server, browser);
  }

  /** The demo page with `query` (e.g. `?ep=wasm&model=dynamic.onnx`), after its model has loaded. */
  async openPage(query: string): Promise<Page> {
    const page = await this.browser.newPage();
    page.on('pageerror', (e) => console.log(`    page error: ${e.message}`));
    await page.goto(`${this.server.url}/${query}`);
    await page.waitForFunction(() => (window as any).dinoDemo !== undefined);
    await page.evaluate(() => (window as any).dinoDemo.ready);
    return page;
  }

  /** runRaw in the page vs onnxruntime-node on the same model file, for random images of n x 1 x h x w. */
  async compareWithNode(page: Page, model: string, n: number, h: number, w: number, label: string, tolerance: number): Promise<void> {
    const x = randomImages(n, 1, h, w, h * w + n);
    const web = await page.evaluate(async ([data, dims]) => (window as any).dinoDemo.runRaw(data, dims), [Array.from(x), [n, 1, h, w]] as const);
    const session = await createSession(model, { threads: 1 });
    const node = await session.run({ images: new ort.Tensor('float32', x, [n, 1, h, w]) });
    for (const name of ['features', 'cls_attention'] as const) {
      const rel = relativeError(web[name], node[name]!.data as Float32Array);
      this.report.push(`${label} ${h}x${w} vs node ${name}: ${rel.toExponential(2)}`);
      assert.ok(rel <= tolerance, `${label} ${h}x${w} ${name}: relative error ${rel}`);
    }
    await session.release();
  }

  async close(): Promise<void> {
    await this.browser.close();
    await this.server.close();
    console.log(this.report.map((l) => `    ${l}`).join('\n'));
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
