/**
 * `dino knn` of a folder larger than the old in-memory cap: the evaluations used to decode every image at the model's
 * size into one SharedArrayBuffer (at most 2^32 bytes: 28,532 images at 224 px), so a bigger split failed with
 * `RangeError: Invalid typed array length`. They now stream the folder through DINO's eval transform and keep only the
 * features. This generates (once, as bench/stream-scale.ts does) a folder of `--count` small JPEGs (default 40,000 in
 * 100 classes), writes the random-init teacher of a tiny ViT at 224 px (embed 48, depth 2; `train` with `stopAfter: 0`,
 * then `exportTeacher`), then runs `dino knn --model M --data FOLDER --nb-knn 20` in a child process under
 * `/usr/bin/time` (every 10th file of each class evaluated against the other 90%) and prints its output, wall time
 * and peak RSS: the evaluation's own process, without this script's training session.
 *
 *   node --import tsx bench/eval-stream-scale.ts [--folder /tmp/stream-40k] [--count 40000]
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { indexImageFolder } from '../runtime/data/folder-index.ts';
import { train } from '../runtime/dino/train.ts';
import { withValues } from '../runtime/dino/config.ts';
import { dinoVitConfig } from '../runtime/dino/vit-presets.ts';
import { exportTeacher } from '../exports/export/teacher.ts';
import { makeImageFolder } from './make-image-folder.ts';

const argv = process.argv.slice(2);
const flag = (name: string, fallback: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1]! : fallback;
};
const folder = flag('folder', '/tmp/stream-40k');
const count = Number(flag('count', '40000'));

if (!existsSync(folder)) {
  const t0 = performance.now();
  const bytes = await makeImageFolder(folder, { count, width: 96, height: 72, quality: 90, classes: 100 });
  console.log(`generated ${count} JPEGs (96x72 ±10%) in ${folder}: ${(bytes / count / 1024).toFixed(1)} KB each, ${((performance.now() - t0) / 1000).toFixed(0)} s`);
}
const out = mkdtempSync(join(tmpdir(), 'eval-stream-scale-'));
try {
  // The random-init teacher of `dino train --arch vit_tiny` with a narrower, shallower ViT (as bench/stream-scale.ts).
  const config = withValues({ ...dinoVitConfig('vit_tiny', { localCropsNumber: 2 }), data: folder }, {
    steps: 1, batch: 16, 'backbone.embedDim': 48, 'backbone.depth': 2, 'backbone.numHeads': 2, 'head.outDim': 256, 'head.hiddenDim': 128, 'head.bottleneckDim': 32,
  });
  await train({ config, out, dataset: await indexImageFolder(folder), stopAfter: 0, progress: 'none', log: () => {} });
  const model = join(out, 'teacher.onnx');
  exportTeacher({ run: out, out: model });
  const dino = resolve(import.meta.dirname, '../bin/dino.ts');
  const args = ['-f', 'wall %e s, peak RSS %M KB', process.execPath, '--import', 'tsx', dino, 'knn', '--model', model, '--data', folder, '--nb-knn', '20'];
  console.log(`/usr/bin/time ${args.map((a) => (a.includes(' ') ? `'${a}'` : a)).join(' ')}`);
  const r = spawnSync('/usr/bin/time', args, { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`dino knn exited with ${r.status ?? r.signal}${r.error ? `: ${r.error.message}` : ''}`);
} finally {
  rmSync(out, { recursive: true, force: true });
}
