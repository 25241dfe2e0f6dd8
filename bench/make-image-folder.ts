/**
 * Writes a folder of generated JPEGs for the data-pipeline benchmarks (bench/loader.ts, bench/stream-scale.ts):
 * `classes` class sub-folders, `count` files in all, each `width` x `height` (varying by up to 10% per file, as
 * photos do), JPEG quality `quality`. The content is smooth colour fields plus fine grain, so the files have a
 * photo's entropy: at 500 x 375 and quality 90 they weigh 60-90 KB like ImageNet's. Deterministic per index.
 *
 *   node --import tsx bench/make-image-folder.ts OUT [--count 1000] [--width 500] [--height 375] [--quality 90] [--classes 10]
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { Prng } from '../dsl/prng.ts';

export interface ImageFolderSpec {
  readonly count: number;
  readonly width: number;
  readonly height: number;
  readonly quality: number;
  readonly classes: number;
}

/** Writes the folder; files already there are overwritten. Returns the bytes written. */
export async function makeImageFolder(out: string, spec: ImageFolderSpec, concurrency = 4): Promise<number> {
  for (let c = 0; c < spec.classes; c++) mkdirSync(join(out, `class${String(c).padStart(3, '0')}`), { recursive: true });
  let next = 0;
  let bytes = 0;
  const work = async () => {
    while (next < spec.count) {
      const i = next++;
      const prng = Prng.seeded(1000 + i);
      const w = Math.round(spec.width * (0.9 + 0.2 * prng.uniform()));
      const h = Math.round(spec.height * (0.9 + 0.2 * prng.uniform()));
      const pixels = Buffer.alloc(w * h * 3);
      // Three low-frequency waves per channel, random phases and directions, plus per-pixel grain.
      const waves = Array.from({ length: 9 }, () => ({ fx: prng.range(-0.04, 0.04), fy: prng.range(-0.04, 0.04), phase: prng.range(0, 6.28), amp: prng.range(20, 45) }));
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          for (let ch = 0; ch < 3; ch++) {
            let v = 128;
            for (let k = 0; k < 3; k++) { const wv = waves[ch * 3 + k]!; v += wv.amp * Math.sin(wv.fx * x + wv.fy * y + wv.phase); }
            v += 40 * (prng.uniform() - 0.5);
            pixels[(y * w + x) * 3 + ch] = Math.max(0, Math.min(255, Math.round(v)));
          }
        }
      }
      const file = join(out, `class${String(i % spec.classes).padStart(3, '0')}`, `img${String(i).padStart(6, '0')}.jpg`);
      const info = await sharp(pixels, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: spec.quality }).toFile(file);
      bytes += info.size;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, work));
  return bytes;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [out, ...rest] = process.argv.slice(2);
  if (!out) throw new Error('usage: node --import tsx bench/make-image-folder.ts OUT [--count N] [--width W] [--height H] [--quality Q] [--classes C]');
  const flag = (name: string, fallback: number) => {
    const i = rest.indexOf(`--${name}`);
    return i >= 0 ? Number(rest[i + 1]) : fallback;
  };
  const spec = { count: flag('count', 1000), width: flag('width', 500), height: flag('height', 375), quality: flag('quality', 90), classes: flag('classes', 10) };
  const t0 = performance.now();
  const bytes = await makeImageFolder(out, spec);
  console.log(`${spec.count} JPEGs (${spec.width}x${spec.height} ±10%, quality ${spec.quality}) in ${out}: ${(bytes / spec.count / 1024).toFixed(1)} KB each, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}
