/**
 * Weighted k-NN evaluation of frozen features (DINO's `eval_knn.py`): L2-normalised features, cosine similarity
 * of each test image to every train image, the k most similar train images vote for their class with weight
 * exp(sim / T), per-class votes summed; top-1 / top-5 accuracy for each k. DINO's defaults: k = 10, 20, 100, 200
 * (`--nb_knn`, option `ks`) and T = 0.07 (`--temperature`, option `temperature`). As in DINO, top-5 counts the
 * first min(5, k) classes. A k above the number of train images uses them all (DINO's `topk` would fail).
 *
 * Similarities are computed block by block (a block of test rows against a chunk of train rows), never as the
 * whole n_test x n_train matrix, and the k nearest of each row are kept with a bounded min-heap (no sort of the
 * row). The block product runs either in onnxruntime-node (a one-MatMul graph compiled with the DSL; default)
 * or in plain TypeScript (register-blocked loops over Float32Array; used for small problems and as a check).
 * Ties in the class ranking are broken by class index, as a stable sort would.
 *
 * `knnEvaluate` (`dino knn`) runs it on the features of an exported model or of feature files. The model's features
 * are computed as `dino features` computes them (features.ts `evalImages`, `imageFeatures`): image folders are
 * streamed through DINO's eval transform batch by batch, so memory holds the N x D features, never the images, and a
 * folder of any size can be evaluated. The raw-pixel baseline is in raw-pixels.ts.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import { Graph, emitOnnx, formatError, matmul, transposeLast2 } from '../../dsl/index.ts';
import { createSession, ort } from '../../runtime/backend.ts';
import { runFile } from '../../runtime/dino/run-folder.ts';
import { type EvalDataOptions, EvalOptionError } from './eval-data.ts';
import { type FeatureSet, evenlySpaced } from './extract-features.ts';
import { type EvalSplit, evalImages, featureModel, imageFeatures } from './features.ts';
import { readFeatureSplits, saveFeatureRows } from './feature-file.ts';
import { runModel } from './run-model.ts';

/** DINO's `--nb_knn` default. */
export const KNN_KS = [10, 20, 100, 200] as const;
/** DINO's vote temperature (`--temperature`). */
export const KNN_TEMPERATURE = 0.07;

/**
 * The k values (sorted, duplicates dropped) and the temperature, checked: every k an integer >= 1, the temperature a
 * finite number > 0. Errors are {@link EvalOptionError}s naming the option (`ks`, `temperature`).
 */
export function checkKnnOptions(ks: readonly number[] = KNN_KS, temperature: number = KNN_TEMPERATURE): { ks: number[]; temperature: number } {
  if (!Array.isArray(ks) || ks.length === 0) throw new EvalOptionError('ks', ks, 'a non-empty list of integers >= 1');
  const bad = ks.find((k) => !(Number.isInteger(k) && k >= 1));
  if (bad !== undefined) throw new EvalOptionError('ks', ks, `integers >= 1 (${JSON.stringify(bad)} is not)`);
  if (!(typeof temperature === 'number' && Number.isFinite(temperature) && temperature > 0)) throw new EvalOptionError('temperature', temperature, 'a number > 0');
  return { ks: [...new Set(ks)].sort((a, b) => a - b), temperature };
}

/** Accuracies in percent, keyed by k as a string (the `--json` shape). */
export interface KnnResult {
  readonly top1: Record<string, number>;
  readonly top5: Record<string, number>;
  readonly n_train: number;
  readonly n_test: number;
  /** The vote temperature, present only when it is not DINO's 0.07 (so default results keep their shape). */
  readonly temperature?: number;
}

export interface KnnOptions {
  /** The k values (DINO's `--nb_knn`); default 10, 20, 100, 200. */
  readonly ks?: readonly number[];
  /** Vote weight exp(similarity / temperature) (DINO's `--temperature`); default 0.07. */
  readonly temperature?: number;
  /** Number of classes (default: the largest label + 1). */
  readonly numClasses?: number;
  /** Where the block products run: 'ort' (onnxruntime-node), 'ts', or 'auto' (ORT above ~1 GFLOP). Default 'auto'. */
  readonly engine?: 'ort' | 'ts' | 'auto';
  /** Test rows per block (default 1024). */
  readonly blockRows?: number;
  /** Train rows per chunk (default 8192; with 1024 test rows a 32 MB similarity block, reused across calls). */
  readonly blockCols?: number;
}

/** Row-wise L2 normalisation into a new array (zero rows stay zero). */
export function l2NormalizeRows(data: Float32Array, dim: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < data.length / dim; r++) {
    let s = 0;
    for (let j = 0; j < dim; j++) s += data[r * dim + j]! ** 2;
    const inv = 1 / Math.max(Math.sqrt(s), 1e-12);
    for (let j = 0; j < dim; j++) out[r * dim + j] = data[r * dim + j]! * inv;
  }
  return out;
}

// ---- block products ----------------------------------------------------------------------------------

/** out[i * m + j] = <a_i, b_j> for a [n, d], b [m, d] (both row-major): 2x4 register blocks. */
export function dotBlockTs(a: Float32Array, n: number, b: Float32Array, m: number, d: number, out: Float32Array): void {
  let i = 0;
  for (; i + 1 < n; i += 2) {
    const a0 = i * d, a1 = a0 + d;
    let j = 0;
    for (; j + 3 < m; j += 4) {
      const b0 = j * d, b1 = b0 + d, b2 = b1 + d, b3 = b2 + d;
      let s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
      for (let k = 0; k < d; k++) {
        const x0 = a[a0 + k]!, x1 = a[a1 + k]!;
        const y0 = b[b0 + k]!, y1 = b[b1 + k]!, y2 = b[b2 + k]!, y3 = b[b3 + k]!;
        s00 += x0 * y0; s01 += x0 * y1; s02 += x0 * y2; s03 += x0 * y3;
        s10 += x1 * y0; s11 += x1 * y1; s12 += x1 * y2; s13 += x1 * y3;
      }
      const o0 = i * m + j, o1 = o0 + m;
      out[o0] = s00; out[o0 + 1] = s01; out[o0 + 2] = s02; out[o0 + 3] = s03;
      out[o1] = s10; out[o1 + 1] = s11; out[o1 + 2] = s12; out[o1 + 3] = s13;
    }
    for (; j < m; j++) {
      let s0 = 0, s1 = 0;
      for (let k = 0; k < d; k++) {
        s0 += a[a0 + k]! * b[j * d + k]!;
        s1 += a[a1 + k]! * b[j * d + k]!;
      }
      out[i * m + j] = s0;
      out[(i + 1) * m + j] = s1;
    }
  }
  for (; i < n; i++) {
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let k = 0; k < d; k++) s += a[i * d + k]! * b[j * d + k]!;
      out[i * m + j] = s;
    }
  }
}

type DotBlock = (a: Float32Array, n: number, b: Float32Array, m: number, d: number) => Promise<Float32Array>;

/** The same product in onnxruntime-node: one graph, MatMul(a, b^T) with symbolic sizes. */
async function ortDotBlock(d: number): Promise<{ run: DotBlock; release: () => Promise<void> }> {
  const g = new Graph('similarity');
  const a = g.input('a', 'float32', ['n', d]);
  const b = g.input('b', 'float32', ['m', d]);
  g.output('sim', matmul(a, transposeLast2(b)));
  const bytes = emitOnnx(g, { params: 'inputs' });
  if (E.isLeft(bytes)) throw new Error(bytes.left.map(formatError).join('\n'));
  const session = await createSession(bytes.right);
  // The output buffer is reused across calls (allocating tens of MB per call costs as much as the product).
  let buffer = new Float32Array(0);
  return {
    run: async (av, n, bv, m) => {
      if (buffer.length < n * m) buffer = new Float32Array(n * m);
      const sim = new ort.Tensor('float32', buffer.subarray(0, n * m), [n, m]);
      await session.run({ a: new ort.Tensor('float32', av, [n, d]), b: new ort.Tensor('float32', bv, [m, d]) }, { sim });
      return buffer;
    },
    release: () => session.release(),
  };
}

// ---- top-k ---------------------------------------------------------------------------------------------

/** A bounded min-heap per row: keeps the `k` largest values seen and their indices. */
class TopK {
  readonly values: Float32Array;
  readonly indices: Int32Array;
  size = 0;
  constructor(readonly k: number) {
    this.values = new Float32Array(k);
    this.indices = new Int32Array(k);
  }

  /** Offers values[0..n) with indices offset..offset+n-1. */
  offer(row: Float32Array, start: number, n: number, offset: number): void {
    const v = this.values, ix = this.indices, k = this.k;
    let j = 0;
    for (; j < n && this.size < k; j++) this.push(row[start + j]!, offset + j);
    let min = v[0]!;
    for (; j < n; j++) {
      const x = row[start + j]!;
      if (x <= min) continue;
      // replace the root, sift down
      let p = 0;
      for (;;) {
        const l = 2 * p + 1;
        if (l >= k) break;
        const c = l + 1 < k && v[l + 1]! < v[l]! ? l + 1 : l;
        if (v[c]! >= x) break;
        v[p] = v[c]!;
        ix[p] = ix[c]!;
        p = c;
      }
      v[p] = x;
      ix[p] = offset + j;
      min = v[0]!;
    }
  }

  private push(x: number, index: number): void {
    const v = this.values, ix = this.indices;
    let p = this.size++;
    while (p > 0) {
      const parent = (p - 1) >> 1;
      if (v[parent]! <= x) break;
      v[p] = v[parent]!;
      ix[p] = ix[parent]!;
      p = parent;
    }
    v[p] = x;
    ix[p] = index;
  }

  /** [value, index] pairs, most similar first (ties: lower index first). */
  sorted(): [number, number][] {
    const pairs: [number, number][] = [];
    for (let i = 0; i < this.size; i++) pairs.push([this.values[i]!, this.indices[i]!]);
    return pairs.sort((p, q) => q[0] - p[0] || p[1] - q[1]);
  }

  reset(): void {
    this.size = 0;
  }
}

// ---- classification ------------------------------------------------------------------------------------

function checkLabels(set: FeatureSet, what: string): void {
  if (set.labels.length !== set.count || set.data.length !== set.count * set.dim) {
    throw new Error(`${what} features: ${set.count} rows of ${set.dim} need ${set.count * set.dim} values and ${set.count} labels, got ${set.data.length} and ${set.labels.length}`);
  }
}

/**
 * Weighted k-NN top-1 / top-5 (percent) of `test` against `train`. Train images without a label (-1) are an
 * error; test images without a label are left out of the accuracy.
 */
export async function knnClassify(train: FeatureSet, test: FeatureSet, opts: KnnOptions = {}): Promise<KnnResult> {
  checkLabels(train, 'train');
  checkLabels(test, 'test');
  if (train.dim !== test.dim) throw new Error(`train features have ${train.dim} dims, test features ${test.dim}`);
  if (train.count === 0) throw new Error('k-NN needs at least one train image');
  if (train.labels.some((l) => l < 0)) throw new Error('k-NN needs a label for every train image (found unlabelled images: give the folder class sub-folders)');
  const { ks, temperature } = checkKnnOptions(opts.ks, opts.temperature);
  const numClasses = opts.numClasses ?? Math.max(...train.labels, ...test.labels) + 1;
  const d = train.dim;
  const kmax = Math.min(ks[ks.length - 1]!, train.count);
  const trainN = l2NormalizeRows(train.data, d);
  const testN = l2NormalizeRows(test.data, d);
  const rows = opts.blockRows ?? 1024;
  const cols = Math.min(opts.blockCols ?? 8192, train.count);
  const flops = 2 * train.count * test.count * d;
  const engine = opts.engine === 'auto' || opts.engine === undefined ? (flops > 1e9 ? 'ort' : 'ts') : opts.engine;
  const ortEngine = engine === 'ort' ? await ortDotBlock(d) : undefined;
  const tsBuffer = engine === 'ts' ? new Float32Array(rows * cols) : undefined;
  const dot: DotBlock = ortEngine
    ? ortEngine.run
    : async (a, n, b, m) => {
        dotBlockTs(a, n, b, m, d, tsBuffer!);
        return tsBuffer!;
      };

  const heaps = Array.from({ length: rows }, () => new TopK(kmax));
  const correct1 = new Float64Array(ks.length), correct5 = new Float64Array(ks.length);
  const votes = new Float64Array(numClasses);
  let labelled = 0;
  try {
    for (let r0 = 0; r0 < test.count; r0 += rows) {
      const n = Math.min(rows, test.count - r0);
      const a = testN.subarray(r0 * d, (r0 + n) * d);
      for (const h of heaps) h.reset();
      for (let c0 = 0; c0 < train.count; c0 += cols) {
        const m = Math.min(cols, train.count - c0);
        const sim = await dot(a, n, trainN.subarray(c0 * d, (c0 + m) * d), m, d);
        for (let i = 0; i < n; i++) heaps[i]!.offer(sim, i * m, m, c0);
      }
      for (let i = 0; i < n; i++) {
        const label = test.labels[r0 + i]!;
        if (label < 0) continue;
        labelled++;
        const nearest = heaps[i]!.sorted();
        ks.forEach((k, ki) => {
          votes.fill(0);
          for (let j = 0; j < Math.min(k, nearest.length); j++) {
            const [sim, idx] = nearest[j]!;
            votes[train.labels[idx]!]! += Math.exp(sim / temperature);
          }
          // rank of the true class: classes with more votes, or equal votes and a lower index, come first
          const mine = votes[label]!;
          let rank = 0;
          for (let c = 0; c < numClasses; c++) if (votes[c]! > mine || (votes[c] === mine && c < label)) rank++;
          if (rank === 0) correct1[ki]!++;
          if (rank < Math.min(5, k)) correct5[ki]!++; // DINO's rule: with k < 5 neighbours, top-5 means top-k
        });
      }
    }
  } finally {
    await ortEngine?.release();
  }
  const pct = (x: number) => (labelled ? (100 * x) / labelled : 0);
  return {
    top1: Object.fromEntries(ks.map((k, i) => [String(k), pct(correct1[i]!)])),
    top5: Object.fromEntries(ks.map((k, i) => [String(k), pct(correct5[i]!)])),
    n_train: train.count,
    n_test: labelled,
    ...(temperature !== KNN_TEMPERATURE ? { temperature } : {}),
  };
}

/** The result as a fixed-width table. */
export function formatKnnTable(result: KnnResult, title = 'weighted k-NN'): string {
  const lines = [`${title}: ${result.n_train} train / ${result.n_test} test images`, '     k    top-1    top-5'];
  for (const k of Object.keys(result.top1)) {
    lines.push(`${k.padStart(6)}  ${result.top1[k]!.toFixed(2).padStart(6)}%  ${result.top5[k]!.toFixed(2).padStart(6)}%`);
  }
  return lines.join('\n');
}

// ---- the command ----------------------------------------------------------------------------------------

export interface KnnEvaluateOptions extends EvalDataOptions {
  /** A run folder: its teacher is exported to DIR/teacher.onnx (when missing or older than the checkpoint). */
  readonly run?: string;
  /** An exported model (.onnx); takes precedence over the run's. */
  readonly model?: string;
  /** 'fmnist' or an image folder; default the run's own data (see exports/evaluation/eval-data.ts), 'fmnist' without a run. */
  readonly dataset?: string;
  /** Use at most this many train / test images (evenly spaced, so every class keeps its share). */
  readonly limitTrain?: number;
  readonly limitTest?: number;
  /** DINO's `--nb_knn`; default 10, 20, 100, 200. */
  readonly ks?: readonly number[];
  /** DINO's `--temperature`; default 0.07. */
  readonly temperature?: number;
  readonly batch?: number;
  readonly engine?: KnnOptions['engine'];
  /** Write DIR/knn.json when evaluating a run (default true). */
  readonly save?: boolean;
  /** Return the extracted features too (a linear probe can then reuse them instead of extracting again). */
  readonly keepFeatures?: boolean;
  /**
   * DINO's `--dump_features DIR`: also write the L2-normalised features and labels of both splits, as
   * DIR/train.safetensors and DIR/test.safetensors (feature files, exports/evaluation/feature-file.ts).
   */
  readonly dumpFeatures?: string;
  /**
   * Precomputed features instead of a model and data: a feature file of `dino features` holding a train and a test
   * split, or a folder holding train.safetensors and test.safetensors (DINO's `--load_features DIR`).
   */
  readonly features?: string;
  readonly log?: (msg: string) => void;
}

export interface KnnEvaluation {
  readonly result: KnnResult;
  readonly table: string;
  /** One line, the `--json` output. */
  readonly json: string;
  readonly model: string;
  /** Images per second of the feature extraction (0 for precomputed features). */
  readonly imagesPerSecond: number;
  readonly seconds: { readonly features: number; readonly knn: number };
  /** The features of the memory bank and the evaluated images, with `keepFeatures`. */
  readonly features?: { readonly train: FeatureSet; readonly test: FeatureSet };
}

/** `npx dino knn`: features of the train and test splits through the exported model, then weighted k-NN. */
export async function knnEvaluate(opts: KnnEvaluateOptions): Promise<KnnEvaluation> {
  const { temperature } = checkKnnOptions(opts.ks, opts.temperature); // before any export or loading
  if (opts.features !== undefined) return knnOfFeatureFiles(opts.features, opts, temperature);
  const model = runModel(opts);
  const bytes = fs.readFileSync(model);
  const shape = featureModel(bytes, model);
  const data = await evalImages(opts, shape);
  const t0 = performance.now();
  const session = await createSession(bytes);
  const images = (split: EvalSplit, limit: number | undefined) => split.images(limit === undefined ? undefined : evenlySpaced(split.count, limit));
  const sources = { train: images(data.train, opts.limitTrain), test: images(data.test, opts.limitTest) };
  const extract = (split: 'train' | 'test') => imageFeatures(session, shape, sources[split], { batch: opts.batch ?? 256, ...(opts.log ? { log: opts.log } : {}) });
  let train: FeatureSet, test: FeatureSet;
  try {
    train = await extract('train');
    test = await extract('test');
  } finally {
    await session.release();
  }
  if (opts.dumpFeatures !== undefined) {
    for (const [name, set] of [['train', train], ['test', test]] as const) {
      const out = path.join(opts.dumpFeatures, `${name}.safetensors`);
      fs.mkdirSync(opts.dumpFeatures, { recursive: true });
      saveFeatureRows(out, { ...set, data: l2NormalizeRows(set.data, set.dim) }, {
        classes: data.classes, splits: [{ name, count: set.count }], model: path.basename(model), modelSha256: createHash('sha256').update(bytes).digest('hex'),
        data: `${data.name} (${name})`, transform: sources[name].description.transform, normalized: true,
      });
      opts.log?.(`wrote ${out}`);
    }
  }
  const t1 = performance.now();
  const result = await knnClassify(train, test, {
    numClasses: data.classes.length || undefined, temperature, ...(opts.ks ? { ks: opts.ks } : {}), ...(opts.engine ? { engine: opts.engine } : {}),
  } as KnnOptions);
  const t2 = performance.now();
  const json = JSON.stringify(result);
  if (opts.run && opts.save !== false) fs.writeFileSync(runFile(opts.run, 'knn'), json + '\n');
  const imagesPerSecond = (train.count + test.count) / ((t1 - t0) / 1000);
  return {
    result,
    table: formatKnnTable(result, `weighted k-NN (cosine, T=${temperature}) on ${data.name}`),
    json,
    model,
    imagesPerSecond,
    seconds: { features: (t1 - t0) / 1000, knn: (t2 - t1) / 1000 },
    ...(opts.keepFeatures ? { features: { train, test } } : {}),
  };
}

/** k-NN of precomputed features (see {@link KnnEvaluateOptions.features}). */
async function knnOfFeatureFiles(source: string, opts: KnnEvaluateOptions, temperature: number): Promise<KnnEvaluation> {
  const t0 = performance.now();
  const { train, test, classes, name, model } = readFeatureSplits(source);
  const t1 = performance.now();
  const result = await knnClassify(train, test, {
    numClasses: classes.length || undefined, temperature, ...(opts.ks ? { ks: opts.ks } : {}), ...(opts.engine ? { engine: opts.engine } : {}),
  } as KnnOptions);
  const t2 = performance.now();
  const json = JSON.stringify(result);
  return {
    result, json, model, imagesPerSecond: 0, seconds: { features: (t1 - t0) / 1000, knn: (t2 - t1) / 1000 },
    table: formatKnnTable(result, `weighted k-NN (cosine, T=${temperature}) on ${name} (precomputed features)`),
    ...(opts.keepFeatures ? { features: { train, test } } : {}),
  };
}
