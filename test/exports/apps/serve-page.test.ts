/**
 * The demo page before any upload: a few gallery images are shown, and a click on one analyses it (attention maps,
 * neighbours); the image's own gallery entry is its nearest neighbour. Headless Chromium, WASM; skipped without
 * /usr/bin/chromium, as the other browser tests.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import { BrowserHarness, CHROMIUM, SKIP_MESSAGE } from '../browser-harness.ts';

if (!fs.existsSync(CHROMIUM)) {
  test('serve page tests (skipped)', () => console.log(`    ${SKIP_MESSAGE}`));
} else {
  let h: BrowserHarness;
  test.before(async () => {
    h = await BrowserHarness.start('serve-page');
  });
  test.after(async () => {
    await h?.close();
  });

  test('gallery samples are shown before an upload; clicking one gives its attention maps and itself as nearest neighbour', async () => {
    const page = await h.openPage('?ep=wasm');
    assert.is(await page.evaluate(() => document.getElementById('samples-box')!.hidden), false);
    const indices = await page.evaluate(() => Array.from(document.querySelectorAll('#samples canvas'), (c) => Number((c as HTMLElement).dataset['index'])));
    assert.equal(indices, [0, 37, 75, 112, 150, 187, 225, 262], 'evenly spaced over the 300 gallery images');
    await page.click('#samples canvas[data-index="75"]');
    await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset['state'] ?? ''), undefined, { timeout: 30000 });
    assert.is(await page.evaluate(() => document.body.dataset['state']), 'done', await page.evaluate(() => (window as any).__lastError));
    const result = await page.evaluate(() => (window as any).__lastResult);
    assert.is(result.neighbours[0].index, 75);
    assert.ok(result.neighbours[0].similarity > 0.9999, `similarity ${result.neighbours[0].similarity}`);
    assert.is(await page.evaluate(() => document.querySelectorAll('#heads figure').length), h.meta.numHeads);
    await page.close();
  });
}

test.run();
