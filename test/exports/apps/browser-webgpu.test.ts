/**
 * The exported teacher on onnxruntime-web's WebGPU execution provider in headless Chromium (SwiftShader adapter,
 * docs/ARCHITECTURE.md, "Browser WebGPU"): the dynamic-size export (in-graph cubic Resize) matches onnxruntime-node within 1e-3 at two sizes.
 * Skipped, with a message, when /usr/bin/chromium is absent or offers no WebGPU adapter.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import { BrowserHarness, CHROMIUM, SKIP_MESSAGE } from '../browser-harness.ts';

if (!fs.existsSync(CHROMIUM)) {
  test('WebGPU tests (skipped)', () => console.log(`    ${SKIP_MESSAGE}`));
} else {
  let h: BrowserHarness;
  test.before(async () => {
    h = await BrowserHarness.start('webgpu');
  });
  test.after(async () => {
    await h?.close();
  });

  test('WebGPU EP (SwiftShader) matches onnxruntime-node: dynamic-size export at 28x28 and 40x24', async () => {
    const probe = await h.browser.newPage();
    await probe.goto(`${h.server.url}/`);
    const hasAdapter = await probe.evaluate(async () => !!((navigator as any).gpu && (await (navigator as any).gpu.requestAdapter())));
    await probe.close();
    if (!hasAdapter) {
      console.log('    SKIPPED: this Chromium offers no WebGPU adapter (needs --enable-unsafe-swiftshader --use-webgpu-adapter=swiftshader)');
      return;
    }
    // The dynamic-size model holds every op of the fixed-size one plus the in-graph Resize; one session, two sizes
    // (28x28: the table as it is; 40x24: the table resized), keeps SwiftShader's shader compilation to one page.
    const dyn = await h.openPage('?ep=webgpu&model=dynamic.onnx');
    assert.is(await dyn.evaluate(() => (window as any).dinoDemo.ep), 'webgpu');
    await h.compareWithNode(dyn, h.dynamicModel, 2, 28, 28, 'chromium webgpu (swiftshader) dynamic', 1e-3);
    await h.compareWithNode(dyn, h.dynamicModel, 2, 40, 24, 'chromium webgpu (swiftshader) dynamic', 1e-3);
    await dyn.close();
  });
}

test.run();
