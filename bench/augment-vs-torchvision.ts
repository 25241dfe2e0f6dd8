/**
 * DINO's multi-crop augmentation per CPU core: ours (decode + multiCropImages) against the original
 * DataAugmentationDINO with PIL decode (bench/augment_anchor_torchvision.py, torch.set_num_threads(1)), on the same
 * generated folder of ImageNet-like JPEGs, interleaved in one run. Not part of the product.
 *
 *   node --import tsx bench/augment-vs-torchvision.ts [--images 200] [--rounds 3] [--dir /tmp/dino-augment-bench]
 *
 * Ours decodes as the loader's workers do (libjpeg-turbo on the calling thread where libturbojpeg0 is installed, else
 * sharp) to interleaved bytes that the augmentation reads in place, and runs on both kernel
 * implementations (runtime/data/view-kernels.ts): the WebAssembly SIMD ones (the default) and the JS ones.
 * Reports CPU-ms per image for each (process CPU time: every thread of each process), their ratios, our split
 * decode / crop+resize / colour / blur / normalise (WebAssembly kernels), and the projection to a 16-core machine. Needs Debian's
 * python3-torchvision for the anchor (without it, only ours is timed).
 */
import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { Prng } from '../dsl/prng.ts';
import { decodeImageBytes } from '../runtime/data/decode.ts';
import { colorJitterDeferred } from '../runtime/data/image-ops.ts';
import { turboJpegAvailable } from '../runtime/data/turbojpeg.ts';
import { DINO_AUGMENT, drawViewParams, multiCropImages, type SourceImage, type ViewKind } from '../runtime/data/multicrop.ts';
import { JS_VIEW_KERNELS, type ViewKernels } from '../runtime/data/view-kernels.ts';
import { wasmViewKernels } from '../runtime/data/wasm-kernels.ts';

const args = process.argv.slice(2);
const flag = (name: string, fallback: string) => { const i = args.indexOf(`--${name}`); return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback; };
const imageCount = Number(flag('images', '200'));
const rounds = Number(flag('rounds', '3'));
const dir = flag('dir', '/tmp/dino-augment-bench');
// A python with torch and torchvision: $DINO_TORCH_PYTHON, else Debian's (python3-torchvision), as the tests look for one.
const python = process.env['DINO_TORCH_PYTHON'] ?? '/usr/bin/python3';
const anchorScript = path.join(import.meta.dirname, 'augment_anchor_torchvision.py');

sharp.concurrency(1); // one libvips thread: we measure one core's work
sharp.cache(false);

/** ImageNet-like JPEGs: ~500 x 375 (both orientations, a few aspect ratios), quality 90, smooth regions, edges,
 * texture and sensor-like noise, about 60-90 KB each. Made once, reused. */
async function makeFolder(count: number): Promise<string[]> {
  fs.mkdirSync(dir, { recursive: true });
  const sizes = [[500, 375], [375, 500], [500, 333], [500, 400], [453, 340]] as const;
  const files: string[] = [];
  for (let i = 0; i < count; i++) {
    const file = path.join(dir, `img-${String(i).padStart(5, '0')}.jpg`);
    files.push(file);
    if (fs.existsSync(file)) continue;
    const [width, height] = sizes[i % sizes.length]!;
    const prng = Prng.seeded(1000 + i);
    const pixels = Buffer.alloc(width * height * 3);
    const blobs = Array.from({ length: 12 }, () => ({ x: prng.range(0, width), y: prng.range(0, height), r: prng.range(15, 120), c: [prng.range(-110, 110), prng.range(-110, 110), prng.range(-110, 110)] }));
    const base = [prng.range(60, 190), prng.range(60, 190), prng.range(60, 190)];
    const fx = prng.range(0.02, 0.2), fy = prng.range(0.02, 0.2), texture = prng.range(8, 30), edge = prng.range(0.3, 0.7) * width;
    const noise = prng.range(45, 70); // sensor-like noise: what brings quality-90 files to ImageNet's 60-90 KB
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        for (let c = 0; c < 3; c++) {
          let v = base[c]! + (x - width / 2) * 0.15 * (c - 1) + (y - height / 2) * 0.1;
          for (const b of blobs) { const d2 = (x - b.x) ** 2 + (y - b.y) ** 2; if (d2 < 9 * b.r * b.r) v += b.c[c]! * Math.exp(-d2 / (2 * b.r * b.r)); }
          v += texture * Math.sin(fx * x + c) * Math.sin(fy * y);
          if (x > edge) v += 25 * (c - 1);
          v += (prng.uniform() - 0.5) * noise;
          pixels[(y * width + x) * 3 + c] = v < 0 ? 0 : v > 255 ? 255 : v;
        }
      }
    }
    await sharp(pixels, { raw: { width, height, channels: 3 } }).jpeg({ quality: 90 }).toFile(file);
  }
  return files;
}

/** Decoding as the loader's workers do (runtime/data/decode.ts, on the calling thread: libjpeg-turbo where its library
 * is installed, else sharp), to interleaved bytes that the resize reads in place. */
async function decode(file: string): Promise<SourceImage> {
  return decodeImageBytes(fs.readFileSync(file), 3, { callingThread: true });
}

const cpuMs = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };

/** Ours, on `files`: CPU-ms per image for decode + all crops. */
async function timeOurs(files: readonly string[], seed: number, kernels: ViewKernels): Promise<number> {
  const prng = Prng.seeded(seed);
  const start = cpuMs();
  for (const file of files) multiCropImages([await decode(file)], DINO_AUGMENT, prng, kernels);
  return (cpuMs() - start) / files.length;
}

/** Our split, one step at a time on the same draws, in process CPU time. */
async function splitOurs(files: readonly string[], seed: number, kernels: ViewKernels): Promise<Record<string, number>> {
  const totals = { decode: 0, cropResize: 0, colour: 0, blur: 0, all: 0 };
  const prng = Prng.seeded(seed);
  for (const file of files) {
    let t = cpuMs();
    const image = await decode(file);
    totals.decode += cpuMs() - t;
    t = cpuMs();
    multiCropImages([image], DINO_AUGMENT, Prng.seeded(seed), kernels);
    totals.all += cpuMs() - t;
    const source = kernels.load(image, DINO_AUGMENT.globalSize);
    const imagePrng = prng.fork();
    const kinds: ViewKind[] = ['global1', 'global2', ...Array<ViewKind>(DINO_AUGMENT.localCrops).fill('local')];
    for (const kind of kinds) {
      const view = drawViewParams(image.height, image.width, kind, DINO_AUGMENT, imagePrng);
      let s = cpuMs();
      const bytes = kernels.resize(source, view.box, view.size, view.size, { flip: view.flip });
      totals.cropResize += cpuMs() - s;
      s = cpuMs();
      const pending = colorJitterDeferred(bytes, view.jitter, view.grayscale, kernels.color);
      if (pending !== null) kernels.applyTable(bytes, pending);
      totals.colour += cpuMs() - s;
      s = cpuMs();
      if (view.blurSigma !== null) kernels.blur(bytes, view.blurSigma);
      totals.blur += cpuMs() - s;
    }
  }
  const per = (ms: number) => ms / files.length;
  return {
    decode: per(totals.decode), cropResize: per(totals.cropResize), colour: per(totals.colour), blur: per(totals.blur),
    normaliseAndRest: per(totals.all - totals.cropResize - totals.colour - totals.blur),
  };
}

/** The anchor as a long-lived process, so that its start-up and imports are not timed. */
function startAnchor(listFile: string): { run: (first: number, count: number, seed: number, mode?: 'run' | 'decode') => Promise<number>; quit: () => void } | null {
  const probe = spawnSync(python, ['-c', 'import torchvision, PIL'], { encoding: 'utf8' });
  if (probe.status !== 0) {
    console.log(`anchor skipped: ${python} cannot import torchvision and PIL (apt-get install python3-torchvision python3-pil)`);
    return null;
  }
  const child = spawn(python, [anchorScript], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  return {
    run: async (first, count, seed, mode = 'run') => {
      child.stdin!.write(`${mode} ${listFile} ${first} ${count} ${seed}\n`);
      const next = await lines.next();
      if (next.done) throw new Error('the torchvision anchor exited early (see its stderr above)');
      const reply = JSON.parse(next.value) as { cpu_s: number; images: number };
      return (reply.cpu_s * 1000) / reply.images;
    },
    quit: () => { child.stdin!.end('quit\n'); },
  };
}

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2; };

const files = await makeFolder(imageCount);
const bytes = files.reduce((sum, f) => sum + fs.statSync(f).size, 0);
console.log(`${files.length} JPEGs in ${dir}, mean ${(bytes / files.length / 1024).toFixed(1)} KB`);
const listFile = path.join(dir, 'files.txt');
fs.writeFileSync(listFile, files.join('\n'));
const anchor = startAnchor(listFile);

const wasm = wasmViewKernels();
if (wasm === null) throw new Error('the WebAssembly kernels cannot run here (runtime/data/wasm/augment.wasm, WebAssembly SIMD)');

// Warm-up: JIT, sharp's first calls, Python's first transforms.
await timeOurs(files.slice(0, 20), 1, wasm);
await timeOurs(files.slice(0, 20), 1, JS_VIEW_KERNELS);
if (anchor) await anchor.run(0, 10, 1);

const ours: number[] = [], oursJs: number[] = [], theirs: number[] = [], ratios: number[] = [], ratiosJs: number[] = [];
for (let r = 0; r < rounds; r++) {
  const seed = 100 + r;
  // Rotate who goes first, so drift in the machine's load falls on all three.
  const runs: (() => Promise<void>)[] = [
    async () => { ours.push(await timeOurs(files, seed, wasm)); },
    async () => { oursJs.push(await timeOurs(files, seed, JS_VIEW_KERNELS)); },
    async () => { if (anchor) theirs.push(await anchor.run(0, files.length, seed)); },
  ];
  for (let k = 0; k < runs.length; k++) await runs[(k + r) % runs.length]!();
  const o = ours[r]!, j = oursJs[r]!, t = theirs[r];
  if (t !== undefined) { ratios.push(t / o); ratiosJs.push(t / j); }
  console.log(`round ${r + 1}: ours ${o.toFixed(2)} CPU-ms/image (JS kernels ${j.toFixed(2)})${t !== undefined ? `, torchvision ${t.toFixed(2)}, ratio ${(t / o).toFixed(2)}x (JS kernels ${(t / j).toFixed(2)}x)` : ''}`);
}
const theirDecode = anchor ? await anchor.run(0, files.length, 7, 'decode') : null;
anchor?.quit();
const split = await splitOurs(files, 7, wasm);
const oursMs = median(ours);
console.log(JSON.stringify({
  images: files.length, rounds, jpegDecoder: turboJpegAvailable() ? 'libjpeg-turbo' : 'sharp', oursCpuMsPerImage: +oursMs.toFixed(2), oursJsKernelsCpuMsPerImage: +median(oursJs).toFixed(2),
  torchvisionCpuMsPerImage: anchor ? +median(theirs).toFixed(2) : null,
  ratio: anchor ? +median(ratios).toFixed(2) : null,
  ratioJsKernels: anchor ? +median(ratiosJs).toFixed(2) : null,
  torchvisionDecodeMs: theirDecode === null ? null : +theirDecode.toFixed(2),
  oursSplitMs: Object.fromEntries(Object.entries(split).map(([k, v]) => [k, +v.toFixed(2)])),
  oursImagesPerSecondPerCore: +(1000 / oursMs).toFixed(1),
  projected16Cores: +((16 * 1000) / oursMs).toFixed(0),
}, null, 1));
