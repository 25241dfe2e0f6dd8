/**
 * `dino bench --loader-only` end to end on a small generated folder: every figure is produced and consistent (no
 * timing assertions), and the CLI refuses the loader flags without their pair.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { formatLoaderBench, runLoaderBench } from '../../bench/loader.ts';
import { makeImageFolder } from '../../bench/make-image-folder.ts';
import { augmentConfig } from '../../runtime/data/multicrop.ts';
import { benchCommand } from '../../cli/tools.ts';
import { runCommand } from '../../cli/args.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'loader-bench-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

test('the loader bench reports images/s, CPU-ms per image, the cores for 700 images/s and peak RSS', async () => {
  await makeImageFolder(dir, { count: 24, width: 64, height: 48, quality: 90, classes: 3 });
  const r = await runLoaderBench({ data: dir, workers: 1, batch: 8, batches: 2, warmup: 1, augment: augmentConfig({ globalSize: 32, localSize: 16, localCrops: 2 }) });
  assert.is(r.files, 24);
  assert.is(r.images, 16);
  assert.is(r.crops, '2 x 32 + 2 x 16');
  assert.ok(r.imagesPerSecond > 0 && r.cpuMsPerImage > 0 && r.peakRssMb > 10, JSON.stringify(r));
  assert.ok(Math.abs(r.imagesPerSecondPerCore * r.cpuMsPerImage - 1000) < 1e-6);
  assert.ok(Math.abs(r.coresForTarget - 700 / r.imagesPerSecondPerCore) < 1e-9);
  const text = formatLoaderBench(r);
  assert.match(text, 'images/s per core');
  assert.match(text, '700 images/s needs about');
});

test('dino bench: --loader-only needs --data, and --data needs --loader-only', async () => {
  for (const argv of [['--loader-only'], ['--data', dir]]) {
    const message = await runCommand(benchCommand, argv).then(() => 'no error', (e: Error) => e.message);
    assert.match(message, '--loader-only --data FOLDER');
  }
});

test.run();
