/**
 * A folder larger than the old in-memory cap trains: the old image-folder road decoded every image at the model's
 * size into one SharedArrayBuffer, at most 2^32 bytes, so a split above 28,532 images at 224 px failed. Streaming
 * holds an index instead. This generates (once) a folder of `--count` small JPEGs (default 40,000), indexes it
 * (time, and the index's heap per file), then trains a few steps of a tiny ViT at 224 px (DINO's crops: 2 x 224 +
 * `--local-crops` x 96) on it, and prints the process's peak RSS.
 *
 *   node --expose-gc --import tsx bench/stream-scale.ts [--folder /tmp/stream-40k] [--count 40000] [--steps 3] [--batch 16] [--workers 1]
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { indexImageFolder } from '../runtime/data/folder-index.ts';
import { train } from '../runtime/dino/train.ts';
import { withValues } from '../runtime/dino/config.ts';
import { dinoVitConfig, withEpochSteps } from '../runtime/dino/vit-presets.ts';
import { makeImageFolder } from './make-image-folder.ts';

const argv = process.argv.slice(2);
const flag = (name: string, fallback: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1]! : fallback;
};
const folder = flag('folder', '/tmp/stream-40k');
const count = Number(flag('count', '40000'));
const steps = flag('steps', '3');
const batch = flag('batch', '16');
const workers = Number(flag('workers', '1'));
const localCrops = flag('local-crops', '2');
const gc = (globalThis as { gc?: () => void }).gc;
const heap = () => { gc?.(); const m = process.memoryUsage(); return m.heapUsed + m.arrayBuffers; };

if (!existsSync(folder)) {
  const t0 = performance.now();
  const bytes = await makeImageFolder(folder, { count, width: 96, height: 72, quality: 90, classes: 100 });
  console.log(`generated ${count} JPEGs (96x72 ±10%) in ${folder}: ${(bytes / count / 1024).toFixed(1)} KB each, ${((performance.now() - t0) / 1000).toFixed(0)} s`);
}
const before = heap();
const t0 = performance.now();
const index = await indexImageFolder(folder);
const indexSeconds = (performance.now() - t0) / 1000;
const perFile = (heap() - before) / index.count;
console.log(`indexed ${index.count} files in ${indexSeconds.toFixed(1)} s; the index holds ${gc ? perFile.toFixed(0) : '? (run with --expose-gc)'} bytes per file`);

// `dino train --arch vit_tiny --data FOLDER --steps N --batch B --local-crops-number L` with a narrower, shallower ViT.
const tiny = withValues({ ...dinoVitConfig('vit_tiny', { localCropsNumber: Number(localCrops) }), data: folder }, {
  steps: Number(steps), batch: Number(batch),
  'backbone.embedDim': 48, 'backbone.depth': 2, 'backbone.numHeads': 2, 'head.outDim': 256, 'head.hiddenDim': 128, 'head.bottleneckDim': 32,
});
const config = withEpochSteps(tiny, index.train.count);
const out = mkdtempSync(join(tmpdir(), 'stream-scale-'));
try {
  const t1 = performance.now();
  const r = await train({ config, out, dataset: index, numWorkers: workers, progress: 'lines', threads: 0 });
  const rss = process.resourceUsage().maxRSS / 1024;
  console.log(`trained ${r.steps} steps of batch ${config.batch} at ${config.augment.globalSize} px on ${index.train.count} images (${config.epochSteps} steps per epoch) in ${((performance.now() - t1) / 1000).toFixed(1)} s; loss ${r.lastMetrics['loss']?.toFixed(4)}; peak RSS ${rss.toFixed(0)} MB`);
} finally {
  rmSync(out, { recursive: true, force: true });
}
