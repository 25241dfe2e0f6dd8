/**
 * `DIR/report.html`: one self-contained page per run: the configuration, loss and teacher-entropy curves (inline
 * SVG, from metrics.jsonl), the k-NN table (DIR/knn.json, written by `dino knn --run DIR`) and the teacher's
 * attention maps on a few test images (PNG data URIs). No scripts, no external files.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { RunFolder, runFile } from '../../runtime/dino/run-folder.ts';
import { createSession } from '../../runtime/backend.ts';
import { computeAttention, writeAttentionPngs } from './attention.ts';
import type { EvalDataOptions } from '../evaluation/eval-data.ts';
import { evalImages, featureModel } from '../evaluation/features.ts';
import { type CurveFile, type CurvePoint, formatCurveTable, readCurve } from '../evaluation/curve.ts';
import { KNN_TEMPERATURE, type KnnResult } from '../evaluation/knn.ts';
import { runModel } from '../evaluation/run-model.ts';
import { readExportInfo, readRunConfig } from '../export/teacher.ts';

export interface MetricsRow {
  readonly step: number;
  readonly [key: string]: number;
}

/** metrics.jsonl rows; a torn last line (a run killed mid-write) is skipped, other bad lines are errors. */
export function readMetrics(file: string): MetricsRow[] {
  if (!fs.existsSync(file)) return [];
  const lines = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '');
  const rows: MetricsRow[] = [];
  lines.forEach((line, i) => {
    try {
      rows.push(JSON.parse(line) as MetricsRow);
    } catch (e) {
      if (i < lines.length - 1) throw new Error(`${file}: line ${i + 1} is not JSON (${(e as Error).message})`);
    }
  });
  return rows;
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** Round tick values covering [lo, hi] (1, 2, 2.5, 5 x 10^k steps). */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

const fmt = (v: number) => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(1) : String(Number(v.toPrecision(4))));

/** A horizontal reference line across a chart (a baseline the series are read against). */
export interface ReferenceLine {
  readonly name: string;
  readonly y: number;
  readonly color: string;
}

export interface ChartOptions {
  /** The x axis's label (default 'step'). */
  readonly xLabel?: string;
  /** Horizontal dashed lines, labelled at the right end; the y range includes them. */
  readonly references?: readonly ReferenceLine[];
  /** A dot on every point (for curves of a few points). */
  readonly markers?: boolean;
}

/**
 * An SVG line chart of y against x (one polyline per series; points with non-finite y are skipped), with optional
 * reference lines.
 */
export function lineChart(title: string, series: { name: string; color: string; points: [number, number][] }[], width = 520, height = 260, opts: ChartOptions = {}): string {
  const pts = series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y));
  if (pts.length === 0) return `<p class="empty">${escapeHtml(title)}: no data</p>`;
  const refs = (opts.references ?? []).filter((r) => Number.isFinite(r.y));
  // Reference labels go in a right margin of their own, clear of the data.
  const m = { left: 58, right: refs.length ? 122 : 14, top: 28, bottom: 34 };
  let [x0, x1] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
  const ys = [...pts.map((p) => p[1]), ...refs.map((r) => r.y)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) [y0, y1] = [y0 - 1, y1 + 1];
  const pad = (y1 - y0) * 0.05;
  [y0, y1] = [y0 - pad, y1 + pad];
  const sx = (x: number) => m.left + ((x - x0) / (x1 - x0)) * (width - m.left - m.right);
  const sy = (y: number) => height - m.bottom - ((y - y0) / (y1 - y0)) * (height - m.top - m.bottom);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${escapeHtml(title)}">`,
    `<text x="${m.left}" y="18" class="title">${escapeHtml(title)}</text>`,
  ];
  for (const t of niceTicks(y0, y1)) {
    parts.push(`<line x1="${m.left}" x2="${width - m.right}" y1="${sy(t).toFixed(1)}" y2="${sy(t).toFixed(1)}" class="grid"/>`);
    parts.push(`<text x="${m.left - 6}" y="${(sy(t) + 4).toFixed(1)}" class="tick" text-anchor="end">${fmt(t)}</text>`);
  }
  for (const t of niceTicks(x0, x1, 6)) {
    parts.push(`<text x="${sx(t).toFixed(1)}" y="${height - m.bottom + 16}" class="tick" text-anchor="middle">${fmt(t)}</text>`);
  }
  parts.push(`<text x="${width - m.right}" y="${height - 4}" class="tick" text-anchor="end">${escapeHtml(opts.xLabel ?? 'step')}</text>`);
  parts.push(`<rect x="${m.left}" y="${m.top}" width="${width - m.left - m.right}" height="${height - m.top - m.bottom}" class="frame"/>`);
  // Labels at their line's height, pushed apart (11 px at least) where lines lie close together.
  const labelY = refs.map((r, i) => ({ i, y: sy(r.y) + 3.5 })).sort((a, b) => a.y - b.y);
  labelY.forEach((l, j) => { if (j > 0) l.y = Math.max(l.y, labelY[j - 1]!.y + 11); });
  refs.forEach((r, i) => {
    const y = sy(r.y).toFixed(1);
    parts.push(`<line x1="${m.left}" x2="${width - m.right}" y1="${y}" y2="${y}" stroke="${r.color}" stroke-dasharray="5 4" stroke-width="1.2" data-reference="${escapeHtml(r.name)}"/>`);
    parts.push(`<text x="${width - m.right + 5}" y="${labelY.find((l) => l.i === i)!.y.toFixed(1)}" fill="${r.color}" class="tick">${escapeHtml(r.name)}</text>`);
  });
  series.forEach((s) => {
    const finite = s.points.filter(([, y]) => Number.isFinite(y));
    const coords = finite.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ');
    parts.push(`<polyline points="${coords}" fill="none" stroke="${s.color}" stroke-width="1.6" data-series="${escapeHtml(s.name)}"/>`);
    if (opts.markers) for (const [x, y] of finite) parts.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="2.6" fill="${s.color}"/>`);
  });
  // The legend: one row right of the title.
  if (series.length > 1) {
    const items = series.map((s, i) => `<tspan fill="${s.color}"${i ? ' dx="14"' : ''}>— ${escapeHtml(s.name)}</tspan>`).join('');
    parts.push(`<text x="${width - m.right}" y="18" text-anchor="end" class="tick">${items}</text>`);
  }
  parts.push('</svg>');
  return parts.join('');
}

/**
 * The curve of DIR/curve.json: k-NN and linear-probe top-1 (%) against minutes of training, with the raw-pixel
 * and random-init (step 0) scores as reference lines.
 */
export function curveChart(curve: CurveFile, width = 680, height = 300): string {
  const minutes = (p: CurvePoint) => p.train_seconds / 60;
  const init = curve.points.find((p) => p.step === 0);
  const knn = '#1f77b4', linear = '#ff7f0e';
  const references: ReferenceLine[] = [];
  if (init) references.push({ name: 'random init, k-NN', y: init.knn_top1, color: knn });
  if (init?.linear_top1 != null) references.push({ name: 'random init, linear', y: init.linear_top1, color: linear });
  if (curve.raw_pixels) references.push({ name: 'raw pixels, k-NN', y: curve.raw_pixels.knn_top1, color: '#555' });
  if (curve.raw_pixels?.linear_top1 != null) references.push({ name: 'raw pixels, linear', y: curve.raw_pixels.linear_top1, color: '#999' });
  const series = [{ name: `k-NN (k=${curve.yardstick.k})`, color: knn, points: curve.points.map((p) => [minutes(p), p.knn_top1] as [number, number]) }];
  if (curve.points.some((p) => p.linear_top1 !== null)) {
    series.push({ name: 'linear probe', color: linear, points: curve.points.map((p) => [minutes(p), p.linear_top1 ?? NaN] as [number, number]) });
  }
  return lineChart('teacher top-1 (%) during training', series, width, height, { xLabel: 'minutes of training', references, markers: true });
}

/** At most `target` points, evenly thinned (long runs have a line per step). */
function thin<T>(rows: T[], target = 800): T[] {
  if (rows.length <= target) return rows;
  const stride = rows.length / target;
  return Array.from({ length: target }, (_, i) => rows[Math.floor(i * stride)]!).concat([rows[rows.length - 1]!]);
}

export function knnTableHtml(knn: KnnResult): string {
  const rows = Object.keys(knn.top1).map((k) => `<tr><td>${escapeHtml(k)}</td><td>${knn.top1[k]!.toFixed(2)}%</td><td>${knn.top5[k]!.toFixed(2)}%</td></tr>`);
  return `<table class="knn"><thead><tr><th>k</th><th>top-1</th><th>top-5</th></tr></thead><tbody>${rows.join('')}</tbody></table>` +
    `<p class="note">weighted k-NN on L2-normalised teacher [CLS] features, votes exp(cos / ${knn.temperature ?? KNN_TEMPERATURE}); ${knn.n_train} train / ${knn.n_test} test images</p>`;
}

export interface ReportOptions extends EvalDataOptions {
  readonly run: string;
  /** k-NN result to show (default: DIR/knn.json when present). */
  readonly knn?: KnnResult;
  /** Evaluations during training to chart (default: DIR/curve.json when present, from `trainCurve`). */
  readonly curve?: CurveFile;
  /** Test images for the attention maps (default 4; 0 to leave them out). */
  readonly attentionImages?: number;
  /** Dataset of the attention images: 'fmnist' or an image folder; default the run's own data (exports/evaluation/eval-data.ts). */
  readonly dataset?: string;
  readonly log?: (msg: string) => void;
}

/** Writes DIR/report.html and returns its path. */
export async function writeReport(opts: ReportOptions): Promise<string> {
  const cfg = readRunConfig(opts.run);
  const metrics = readMetrics(new RunFolder(opts.run).metricsFile);
  const knnFile = runFile(opts.run, 'knn');
  const knn = opts.knn ?? (fs.existsSync(knnFile) ? (JSON.parse(fs.readFileSync(knnFile, 'utf8')) as KnnResult) : undefined);
  const rows = thin(metrics);
  const curve = (key: string) => rows.filter((r) => typeof r[key] === 'number').map((r) => [r.step, r[key]!] as [number, number]);

  const sections: string[] = [];
  const last = metrics[metrics.length - 1];
  const speed = metrics.length ? metrics.reduce((s, r) => s + (r['images_per_s'] ?? 0), 0) / metrics.length : 0;
  sections.push(`<section><h2>Run</h2><table class="kv">${[
    ['folder', path.resolve(opts.run)], ['preset', cfg.preset], ['steps logged', String(metrics.length)],
    ['last loss', last ? fmt(last['loss'] ?? NaN) : '–'], ['last teacher entropy', last ? fmt(last['teacher_entropy'] ?? NaN) : '–'],
    ['mean throughput', speed ? `${speed.toFixed(1)} images/s` : '–'],
    ['backbone', `ViT ${cfg.backbone.embedDim}d × ${cfg.backbone.depth} blocks, ${cfg.backbone.numHeads} heads, patch ${cfg.backbone.patchSize}, ${cfg.backbone.imgSize}px${cfg.backbone.convStem?.length ? `, conv stem ${cfg.backbone.convStem.join('-')} channels` : ''}`],
    ['head', `K = ${cfg.head.outDim}, hidden ${cfg.head.hiddenDim}, bottleneck ${cfg.head.bottleneckDim}`],
    ['batch / lr / seed', `${cfg.batch} / ${cfg.lr} / ${cfg.seed}`],
    ['teacher momentum / temperature', `${cfg.momentumTeacher} / ${cfg.teacherTemp}`],
  ].map(([k, v]) => `<tr><th>${escapeHtml(k!)}</th><td>${escapeHtml(v!)}</td></tr>`).join('')}</table></section>`);

  sections.push(`<section><h2>Training curves</h2><div class="charts">${[
    lineChart('DINO loss', [{ name: 'loss', color: '#1f77b4', points: curve('loss') }]),
    lineChart('teacher output entropy (nats)', [{ name: 'entropy', color: '#d62728', points: curve('teacher_entropy') }]),
    lineChart('KL(teacher ‖ batch mean)', [{ name: 'kl', color: '#2ca02c', points: curve('teacher_kl') }]),
    lineChart('learning rate', [{ name: 'lr', color: '#9467bd', points: curve('lr') }]),
  ].join('')}</div><p class="note">A collapsing run shows as entropy going to log K = ${Math.log(cfg.head.outDim).toFixed(2)} (uniform teacher) or to 0 with the KL at 0 (one-hot teacher).</p></section>`);

  const evalCurve = opts.curve ?? readCurve(opts.run);
  if (evalCurve) sections.push(curveSection(evalCurve));

  sections.push(`<section><h2>k-NN evaluation</h2>${knn ? knnTableHtml(knn) : `<p class="empty">No k-NN result yet: run <code>npx dino knn --run ${escapeHtml(opts.run)}</code>, then rebuild the report.</p>`}</section>`);

  const count = opts.attentionImages ?? 4;
  if (count > 0) sections.push(await attentionSection(opts, count));

  const html = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>DINO run report: ${escapeHtml(path.basename(path.resolve(opts.run)))}</title><style>${STYLE}</style></head>` +
    `<body><h1>DINO run report</h1><p class="note">generated ${new Date().toISOString()}</p>${sections.join('\n')}</body></html>\n`;
  const out = runFile(opts.run, 'report');
  fs.writeFileSync(out, html);
  return out;
}

function curveSection(curve: CurveFile): string {
  const y = curve.yardstick;
  const probe = y.probe === false ? 'no linear probe' : `linear probe: ${y.probe.epochs ?? 20} epochs of ${y.probe.optimizer ?? 'sgd'} at lr ${y.probe.lr ?? 0.1} on the bank's standardised features`;
  return `<section><h2>Evaluation during training</h2>${curveChart(curve)}` +
    `<pre class="curve">${escapeHtml(formatCurveTable(curve))}</pre>` +
    `<p class="note">The teacher at each point on one fixed yardstick: weighted k-NN (k=${y.k}, T=${y.temperature}) of ${y.n_test} evenly spaced test images against a class-balanced bank of ${y.n_train} train images; ${escapeHtml(probe)}. ` +
    `Minutes are the run's own step times (compile and evaluation excluded). A smaller bank reads lower than the full train split, so compare points with each other, not with the full-split k-NN below.</p></section>`;
}

/** The teacher's per-head attention on the first test image of the first `count` classes, as inline PNGs. */
async function attentionSection(opts: ReportOptions, count: number): Promise<string> {
  const model = runModel({ run: opts.run, ...(opts.log ? { log: opts.log } : {}) });
  const bytes = fs.readFileSync(model);
  const info = readExportInfo(bytes);
  // Only the picked images are decoded (a folder is indexed, not loaded), each at the model's input size.
  const data = await evalImages(opts, featureModel(bytes, model));
  const labels = data.test.labels;
  const picks: number[] = [];
  const seen = new Set<number>();
  for (let i = 0; i < labels.length && picks.length < count; i++) {
    const label = labels[i]!;
    if (!seen.has(label)) {
      seen.add(label);
      picks.push(i);
    }
  }
  const session = await createSession(bytes);
  const tmp = fs.mkdtempSync(path.join(opts.run, '.report-'));
  const rows: string[] = [];
  try {
    const images = data.test.images(picks);
    const { channels, height, width } = images, per = channels * height * width;
    for await (const b of images.batches(0, Math.max(1, picks.length))) for (let k = 0; k < b.count; k++) {
      if (b.skipped?.some((s) => s.row === k)) continue; // a file that cannot be decoded, under skipBadImages
      const i = picks[b.first + k]!;
      const image = { channels, height, width, data: b.images.slice(k * per, (k + 1) * per) };
      const result = await computeAttention(session, info, image);
      const files = await writeAttentionPngs(path.join(tmp, String(i)), image, result, Math.max(1, Math.ceil(112 / height)));
      const uri = (f: string) => `data:image/png;base64,${fs.readFileSync(f).toString('base64')}`;
      const pick = (name: string) => files.find((f) => path.basename(f) === name)!;
      const cells = [`<figure><img src="${uri(pick('image.png'))}" alt="input"><figcaption>${escapeHtml(data.classes[labels[i]!] ?? '')}</figcaption></figure>`];
      for (let h = 0; h < result.heads.length; h++) {
        cells.push(`<figure><img src="${uri(pick(`attn-head${h}.png`))}" alt="head ${h}"><img src="${uri(pick(`mask-head${h}.png`))}" alt="mask ${h}"><figcaption>head ${h}</figcaption></figure>`);
      }
      rows.push(`<div class="attn">${cells.join('')}</div>`);
    }
  } finally {
    await session.release();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return `<section><h2>Attention maps</h2><p class="note">Last block, [CLS] query over the patches, per head (top); the patches holding 60% of the attention mass (bottom).</p>${rows.join('')}</section>`;
}

const STYLE = `
body { font-family: system-ui, sans-serif; max-width: 1150px; margin: 0 auto; padding: 1rem 1.5rem 3rem; color: #1d1d1f; }
h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
.note, .empty { color: #666; font-size: 0.85rem; }
table { border-collapse: collapse; }
td, th { padding: 0.25rem 0.8rem; text-align: left; border-bottom: 1px solid #eee; }
table.knn td { font-variant-numeric: tabular-nums; text-align: right; }
.charts { display: flex; flex-wrap: wrap; gap: 1rem; }
svg .title { font-size: 13px; font-weight: 600; }
svg .tick { font-size: 10px; fill: #555; }
svg .grid { stroke: #eee; }
svg .frame { fill: none; stroke: #bbb; }
.attn { display: flex; gap: 0.6rem; margin-bottom: 0.8rem; flex-wrap: wrap; }
.attn figure { margin: 0; text-align: center; font-size: 0.75rem; }
.attn img { display: block; width: 112px; image-rendering: pixelated; margin-bottom: 2px; }
`;
