/**
 * What an exported teacher's features encode: the top 3 principal components of its L2-normalised `features`
 * on 2,000 evenly spaced Fashion-MNIST train images, each with its share of the variance and its correlation
 * with two image statistics (mean intensity; fraction of pixels above 0.1, "ink"). Used in docs/fmnist-quick.md.
 *
 *   npx tsx tools/feature-pca.ts RUN/teacher.onnx
 */
import { loadFashionMnist } from '../runtime/data/fashion-mnist.ts';
import { extractFeatures, evenlySpaced } from '../exports/evaluation/extract-features.ts';
import { Prng } from '../dsl/index.ts';

const model = process.argv[2];
if (!model) throw new Error('usage: npx tsx tools/feature-pca.ts MODEL.onnx');
const prng = Prng.seeded(0);
const data = await loadFashionMnist();
const idx = evenlySpaced(60000, 2000);
const f = await extractFeatures(model, { channels: 1, height: 28, width: 28, set: data.train, indices: idx });
const n = f.count, d = f.dim;
// L2-normalise rows (as k-NN), centre
const X = new Float64Array(n * d);
for (let i = 0; i < n; i++) { let s = 0; for (let j = 0; j < d; j++) s += f.data[i * d + j]! ** 2; s = Math.sqrt(s); for (let j = 0; j < d; j++) X[i * d + j] = f.data[i * d + j]! / s; }
const mu = new Float64Array(d); for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mu[j] = mu[j]! + X[i * d + j]! / n;
for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) X[i * d + j] = X[i * d + j]! - mu[j]!;
const stats = { mean: new Float64Array(n), ink: new Float64Array(n) };
for (let i = 0; i < n; i++) { let s = 0, c = 0; const o = idx[i]! * 784; for (let p = 0; p < 784; p++) { const v = data.train.pixels[o + p]! / 255; s += v; if (v > 0.1) c++; } stats.mean[i] = s / 784; stats.ink[i] = c / 784; }
const corr = (a: Float64Array, b: Float64Array) => { const m = (x: Float64Array) => x.reduce((p, q) => p + q, 0) / x.length; const ma = m(a), mb = m(b); let sab = 0, saa = 0, sbb = 0; for (let i = 0; i < a.length; i++) { sab += (a[i]! - ma) * (b[i]! - mb); saa += (a[i]! - ma) ** 2; sbb += (b[i]! - mb) ** 2; } return sab / Math.sqrt(saa * sbb); };
let total = 0; for (const v of X) total += v * v;
// top 3 components by power iteration, each deflated against the ones before
const comps: Float64Array[] = [];
for (let c = 0; c < 3; c++) {
  let v = new Float64Array(d).map(() => prng.uniform() - 0.5);
  for (let it = 0; it < 100; it++) {
    const proj = new Float64Array(n); for (let i = 0; i < n; i++) { let s = 0; for (let j = 0; j < d; j++) s += X[i * d + j]! * v[j]!; proj[i] = s; }
    const w = new Float64Array(d); for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) w[j] = w[j]! + X[i * d + j]! * proj[i]!;
    for (const u of comps) { let s = 0; for (let j = 0; j < d; j++) s += w[j]! * u[j]!; for (let j = 0; j < d; j++) w[j] = w[j]! - s * u[j]!; }
    const nw = Math.sqrt(w.reduce((p, q) => p + q * q, 0)); v = w.map((x) => x / nw);
  }
  comps.push(v);
  const proj = new Float64Array(n); let varc = 0; for (let i = 0; i < n; i++) { let s = 0; for (let j = 0; j < d; j++) s += X[i * d + j]! * v[j]!; proj[i] = s; varc += s * s; }
  console.log(`PC${c + 1}: ${(100 * varc / total).toFixed(1)}% of variance; corr with mean intensity ${corr(proj, stats.mean).toFixed(2)}, ink fraction ${corr(proj, stats.ink).toFixed(2)}`);
}
