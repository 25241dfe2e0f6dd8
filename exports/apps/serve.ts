/**
 * `npx dino serve`: the browser demo. A static file server bound to 127.0.0.1 only, serving
 * - `/`       the demo page (exports/apps/web/),
 * - `/ort/`   onnxruntime-web's browser builds (node_modules/onnxruntime-web/dist),
 * - `/data/`  the demo data: model.onnx (the exported teacher), gallery.json, gallery-features.bin (L2-normalised
 *             features of a train subset) and gallery-pixels.bin (their pixels, uint8), prepared by {@link prepareDemo}.
 * In the page, the user picks an image; onnxruntime-web (WebGPU when the browser has an adapter, else WASM)
 * computes its features and [CLS] attention; the page draws per-head attention maps and the nearest gallery images.
 *
 * Request paths are checked before any file is touched: only GET/HEAD; the percent-decoded path must not contain
 * `..` segments, backslashes, NUL, empty segments or a drive letter; the resolved file (symlinks followed) must lie
 * inside its mount. The Host header must name the loopback address (a guard against DNS rebinding).
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { createSession } from '../../runtime/backend.ts';
import type { EvalDataOptions } from '../evaluation/eval-data.ts';
import { l2NormalizeRows } from '../evaluation/knn.ts';
import { evenlySpaced } from '../evaluation/extract-features.ts';
import { evalImages, featureModel, imageFeatures } from '../evaluation/features.ts';
import { runModel } from '../evaluation/run-model.ts';
import { readExportInfo } from '../export/teacher.ts';

/** The port asked for is taken. The CLI words it with its flag (cli/errors.ts). */
export class PortInUseError extends Error {
  constructor(readonly port: number) {
    super(`port ${port} on 127.0.0.1 is in use: choose another port (or 0 for any free port)`);
    this.name = 'PortInUseError';
  }
}

export const WEB_ROOT = fileURLToPath(new URL('./web/', import.meta.url));

/** onnxruntime-web's dist folder (its browser bundles and .wasm files). */
export function ortWebDist(): string {
  return path.dirname(createRequire(import.meta.url).resolve('onnxruntime-web'));
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8', '.json': 'application/json; charset=utf-8', '.wasm': 'application/wasm',
  '.onnx': 'application/octet-stream', '.bin': 'application/octet-stream', '.png': 'image/png', '.svg': 'image/svg+xml',
  '.map': 'application/json; charset=utf-8', '.ico': 'image/x-icon',
};

/**
 * The file a request path names inside `root`, or null when the path is not acceptable (see the module comment).
 * `urlPath` is the raw path after the mount prefix, still percent-encoded, without the query.
 */
export function resolveRequestPath(root: string, urlPath: string): string | null {
  let decoded: string;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return null; // malformed percent-encoding
  }
  if (decoded.includes('\0') || decoded.includes('\\') || /^\/?[a-zA-Z]:/.test(decoded) || decoded.startsWith('//')) return null;
  const segments = (decoded.startsWith('/') ? decoded.slice(1) : decoded).split('/');
  if (segments.some((s) => s === '..' || s === '.' || s === '')) return null;
  const base = path.resolve(root);
  const file = path.resolve(base, ...segments);
  if (file !== base && !file.startsWith(base + path.sep)) return null;
  return file;
}

export interface StaticServer {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

export interface StaticServerOptions {
  /** URL prefix (`/`, `/ort/`, ...) -> folder. The longest matching prefix wins. */
  readonly mounts: Readonly<Record<string, string>>;
  /** Port on 127.0.0.1; 0 picks a free one. */
  readonly port?: number;
  readonly log?: (msg: string) => void;
}

/** A read-only static server on 127.0.0.1 (never another interface). */
export function startStaticServer(opts: StaticServerOptions): Promise<StaticServer> {
  const mounts = Object.entries(opts.mounts)
    .map(([prefix, dir]) => [prefix.endsWith('/') ? prefix : `${prefix}/`, fs.realpathSync(dir)] as const)
    .sort((a, b) => b[0].length - a[0].length);
  let port = 0;
  const server = http.createServer((req, res) => {
    const refuse = (code: number, text: string) => {
      res.writeHead(code, { 'content-type': 'text/plain; charset=utf-8', 'x-content-type-options': 'nosniff' });
      res.end(`${code} ${text}\n`);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return refuse(405, 'method not allowed');
    const host = (req.headers.host ?? '').toLowerCase();
    if (host !== `127.0.0.1:${port}` && host !== `localhost:${port}`) return refuse(403, 'forbidden host');
    const raw = req.url ?? '/';
    if (!raw.startsWith('/')) return refuse(400, 'bad request');
    const pathname = raw.split('?')[0]!.split('#')[0]!;
    const mount = mounts.find(([prefix]) => pathname.startsWith(prefix) || pathname === prefix.slice(0, -1));
    if (!mount) return refuse(404, 'not found');
    let rel = pathname.slice(mount[0].length - 1);
    if (rel === '' || rel.endsWith('/')) rel += 'index.html';
    const file = resolveRequestPath(mount[1], rel);
    if (!file) return refuse(400, 'bad path');
    let real: string;
    try {
      real = fs.realpathSync(file);
      if (real !== mount[1] && !real.startsWith(mount[1] + path.sep)) return refuse(403, 'forbidden');
      if (!fs.statSync(real).isFile()) return refuse(404, 'not found');
    } catch {
      return refuse(404, 'not found');
    }
    const size = fs.statSync(real).size;
    res.writeHead(200, {
      'content-type': CONTENT_TYPES[path.extname(real).toLowerCase()] ?? 'application/octet-stream',
      'content-length': size,
      'x-content-type-options': 'nosniff',
      'cache-control': 'no-cache',
      // cross-origin isolation: lets onnxruntime-web use SharedArrayBuffer (WASM threads)
      'cross-origin-opener-policy': 'same-origin',
      'cross-origin-embedder-policy': 'require-corp',
      'cross-origin-resource-policy': 'same-origin',
    });
    if (req.method === 'HEAD') return res.end();
    fs.createReadStream(real).pipe(res);
  });
  return new Promise((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(e.code === 'EADDRINUSE' ? new PortInUseError(opts.port ?? 0) : new Error(e.message)));
    server.listen(opts.port ?? 0, '127.0.0.1', () => {
      port = (server.address() as AddressInfo).port;
      const url = `http://127.0.0.1:${port}`;
      opts.log?.(`serving ${url}/ (127.0.0.1 only; Ctrl-C to stop)`);
      resolve({ url, port, close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }) });
    });
  });
}

// ---- demo data ---------------------------------------------------------------------------------------------

export interface GalleryMeta {
  readonly count: number;
  readonly dim: number;
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  readonly labels: number[];
  readonly classes: string[];
  readonly dataset: string;
  /** The model's input size, or null when dynamic (then the page uses the gallery image size). */
  readonly modelSize: readonly [number, number] | null;
  readonly patchSize: number;
  readonly numHeads: number;
  readonly modelChannels: number;
}

/**
 * Writes the demo data into `dir`: model.onnx (a copy of the model), gallery-features.bin (float32 [count, D],
 * L2-normalised), gallery-pixels.bin (uint8 [count, C, H, W]) and gallery.json ({@link GalleryMeta}). The gallery is
 * `gallerySize` evenly spaced images of the evaluation data's train split (exports/evaluation/eval-data.ts; default
 * Fashion-MNIST), as the evaluations see them (an image folder through DINO's eval transform at the model's side).
 * Only the gallery's images are decoded; their pixels are what the page shows, so memory holds
 * gallerySize x C x H x W bytes (2,000 images at 224 px: 300 MB), never the whole dataset.
 */
export async function prepareDemo(opts: EvalDataOptions & { model: string; dir: string; gallerySize?: number }): Promise<GalleryMeta> {
  const bytes = fs.readFileSync(opts.model);
  const info = readExportInfo(bytes);
  const shape = featureModel(bytes, opts.model);
  const data = await evalImages(opts, shape, { needTest: false }); // the gallery is the bank
  const images = data.train.images(evenlySpaced(data.train.count, opts.gallerySize ?? 2000));
  opts.log?.(`computing gallery features of ${images.count} ${data.name} train images`);
  const per = images.channels * images.height * images.width;
  const pixels = new Uint8Array(images.count * per);
  let kept = 0; // gallery images so far: a file that cannot be decoded (skipBadImages) is left out of both files
  const session = await createSession(bytes);
  let feats;
  try {
    feats = await imageFeatures(session, shape, images, {
      batch: 256, ...(opts.log ? { log: opts.log } : {}),
      onBatch: (b) => {
        const bad = new Set((b.skipped ?? []).map((s) => s.row));
        for (let k = 0; k < b.count; k++) {
          if (bad.has(k)) continue;
          // Model input is byte / 255 (Fashion-MNIST's bytes, or the eval transform's rounded ones): back to bytes.
          for (let j = 0; j < per; j++) pixels[kept * per + j] = Math.round(b.images[k * per + j]! * 255);
          kept++;
        }
      },
    });
  } finally {
    await session.release();
  }
  fs.mkdirSync(opts.dir, { recursive: true });
  fs.writeFileSync(path.join(opts.dir, 'model.onnx'), bytes);
  const normalized = l2NormalizeRows(feats.data, feats.dim);
  fs.writeFileSync(path.join(opts.dir, 'gallery-features.bin'), new Uint8Array(normalized.buffer));
  fs.writeFileSync(path.join(opts.dir, 'gallery-pixels.bin'), pixels.subarray(0, kept * per));
  const meta: GalleryMeta = {
    count: feats.count, dim: feats.dim, channels: images.channels, height: images.height, width: images.width,
    labels: Array.from(feats.labels), classes: [...data.classes], dataset: data.name,
    modelSize: info.imageSize ? [info.imageSize[0], info.imageSize[1]] : null,
    patchSize: info.backbone.patchSize, numHeads: info.backbone.numHeads, modelChannels: info.backbone.inChans,
  };
  fs.writeFileSync(path.join(opts.dir, 'gallery.json'), JSON.stringify(meta));
  return meta;
}

export interface ServeOptions extends EvalDataOptions {
  readonly run?: string;
  readonly model?: string;
  /**
   * 'fmnist' or an image folder: where the gallery comes from (its train split: the memory bank of exports/evaluation/eval-data.ts);
   * default the run's own data, 'fmnist' without a run.
   */
  readonly dataset?: string;
  /** Number of gallery images (default 2000). */
  readonly gallerySize?: number;
  /** Port on 127.0.0.1 (default 8080; 0 = any free port). */
  readonly port?: number;
  /** Folder for the demo data (default DIR/demo for a run, else a folder next to the model). */
  readonly dataDir?: string;
  readonly log?: (msg: string) => void;
}

/** Prepares the demo data (when missing or older than the model) and serves the page at the returned `url`. */
export async function serve(opts: ServeOptions): Promise<StaticServer & { readonly dataDir: string }> {
  const model = runModel(opts);
  const dataDir = opts.dataDir ?? (opts.run ? path.join(opts.run, 'demo') : path.join(path.dirname(model), `${path.basename(model, '.onnx')}-demo`));
  const stamp = path.join(dataDir, 'gallery.json');
  if (!fs.existsSync(stamp) || fs.statSync(stamp).mtimeMs < fs.statSync(model).mtimeMs) {
    await prepareDemo({ ...opts, model, dir: dataDir, gallerySize: opts.gallerySize ?? 2000 });
  }
  // No log of its own here: the caller prints the returned url once (`dino serve` does).
  const server = await startStaticServer({ mounts: { '/': WEB_ROOT, '/ort/': ortWebDist(), '/data/': dataDir }, port: opts.port ?? 8080 });
  return { ...server, dataDir };
}
