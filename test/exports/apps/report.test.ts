/** exports/apps/report.ts: DIR/report.html with curves from metrics.jsonl, the k-NN table and attention maps. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { CurveFile, CurvePoint } from '../../../exports/evaluation/curve.ts';
import { curveChart, lineChart, niceTicks, readMetrics, writeReport } from '../../../exports/apps/report.ts';
import { makeRun, tempDir } from '../helpers.ts';

test('niceTicks: round steps covering the range', () => {
  assert.equal(niceTicks(0, 10), [0, 2, 4, 6, 8, 10]);
  assert.equal(niceTicks(0.13, 0.61, 4), [0.2, 0.4, 0.6]);
  assert.equal(niceTicks(-3, 7.5), [-2.5, 0, 2.5, 5, 7.5]);
  assert.equal(niceTicks(5, 5), [5]);
});

test('lineChart: one polyline point per finite value, scaled into the plot area; labels escaped', () => {
  const svg = lineChart('a <b>', [{ name: 's', color: '#000', points: [[0, 1], [1, NaN], [2, 3], [4, 2]] }], 200, 100);
  const pts = /points="([^"]+)"/.exec(svg)![1]!.split(' ').map((p) => p.split(',').map(Number));
  assert.is(pts.length, 3);
  assert.ok(pts.every(([x, y]) => x! >= 58 && x! <= 186 && y! >= 28 && y! <= 66), JSON.stringify(pts));
  assert.ok(pts[0]![0]! < pts[1]![0]! && pts[1]![1]! < pts[0]![1]!, 'x grows right, larger y is higher');
  assert.match(svg, 'a &lt;b&gt;');
  assert.match(lineChart('empty', [{ name: 's', color: '#000', points: [] }]), 'no data');
});

const point = (step: number, seconds: number, knn: number, linear: number | null): CurvePoint => ({
  step, train_seconds: seconds, knn_top1: knn, linear_top1: linear, n_train: 10000, n_test: 5000, loss: step ? 7 : null, teacher_entropy: null, teacher_kl: null, eval_seconds: 1,
});
const CURVE: CurveFile = {
  yardstick: { n_train: 10000, n_test: 5000, k: 20, temperature: 0.07, probe: { epochs: 30, lr: 0.3 } },
  points: [point(0, 0, 66.5, 70.25), point(10, 60, 67, null), point(20, 120, 69, 72), point(30, 180, 70, 73), point(40, 240, 71, 74.5)],
  raw_pixels: { knn_top1: 84.1, linear_top1: 81.2, n_train: 10000, n_test: 5000 },
};

/** Each polyline's points by series name, as [x, y] in SVG units. */
const polylines = (svg: string) => new Map([...svg.matchAll(/<polyline points="([^"]*)"[^>]*data-series="([^"]+)"/g)].map((m) => [m[2]!, m[1]!.split(' ').map((p) => p.split(',').map(Number))]));

test('curveChart: k-NN and linear against minutes, a dot per point, dashed reference lines for random init and raw pixels', () => {
  const svg = curveChart(CURVE, 620, 300);
  const lines = polylines(svg);
  assert.equal([...lines.keys()], ['k-NN (k=20)', 'linear probe']);
  const knn = lines.get('k-NN (k=20)')!, linear = lines.get('linear probe')!;
  assert.is(knn.length, 5);
  assert.is(linear.length, 4, 'the point without a probe is left out');
  assert.is((svg.match(/<circle /g) ?? []).length, 9);
  // x is minutes: evenly spaced points (every 1 min) are evenly spaced on the chart
  const dx = knn.slice(1).map((p, i) => p[0]! - knn[i]![0]!);
  assert.ok(dx.every((d) => Math.abs(d - dx[0]!) < 0.2), `x steps ${dx}`);
  assert.match(svg, '>minutes of training<');
  const refs = new Map([...svg.matchAll(/<line x1="[^"]+" x2="[^"]+" y1="([^"]+)" y2="([^"]+)"[^>]*data-reference="([^"]+)"/g)].map((m) => [m[3]!, [Number(m[1]), Number(m[2])]]));
  assert.equal([...refs.keys()], ['random init, k-NN', 'random init, linear', 'raw pixels, k-NN', 'raw pixels, linear']);
  for (const [, [y1, y2]] of refs) assert.is(y1, y2, 'horizontal');
  // The random-init k-NN line passes through the step-0 point; raw pixels (84.1%) sit above every point.
  assert.ok(Math.abs(refs.get('random init, k-NN')![0]! - knn[0]![1]!) < 0.01);
  assert.ok(knn.every((p) => p[1]! > refs.get('raw pixels, k-NN')![0]!), 'SVG y grows downwards: lower accuracy, larger y');
  assert.ok(refs.get('raw pixels, k-NN')![0]! >= 28, 'the reference lines are inside the plot area');
});

test('readMetrics skips a torn last line, rejects a bad line in the middle', () => {
  const dir = tempDir('metrics');
  const f = path.join(dir, 'metrics.jsonl');
  fs.writeFileSync(f, '{"step":1,"loss":2}\n{"step":2,"loss":1.5}\n{"step":3,"lo');
  assert.equal(readMetrics(f).map((r) => r.step), [1, 2]);
  fs.writeFileSync(f, '{"step":1}\nnot json\n{"step":3}\n');
  assert.throws(() => readMetrics(f), /line 2/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('writeReport: curves, k-NN table from knn.json, attention maps inline', async () => {
  const dir = tempDir('report');
  const run = makeRun(path.join(dir, 'run'), { steps: 30 });
  const knn = { top1: { '10': 61.25, '20': 62.5, '100': 60, '200': 58.75 }, top5: { '10': 95, '20': 96.5, '100': 97, '200': 97.25 }, n_train: 60000, n_test: 10000 };
  fs.writeFileSync(path.join(run.dir, 'knn.json'), JSON.stringify(knn));
  const out = await writeReport({ run: run.dir, attentionImages: 2 });
  assert.is(out, path.join(run.dir, 'report.html'));
  const html = fs.readFileSync(out, 'utf8');
  assert.is((html.match(/<svg /g) ?? []).length, 4);
  const loss = /data-series="loss"/.test(html) && /points="([^"]+)" fill="none" stroke="#1f77b4"/.exec(html)![1]!;
  assert.is((loss as string).split(' ').length, 30, 'one point per logged step');
  assert.match(html, 'teacher output entropy');
  for (const v of ['61.25%', '62.50%', '97.25%', '60000 train / 10000 test']) assert.match(html, v);
  // 2 images x (input + 3 heads x (attention + mask))
  assert.is((html.match(/src="data:image\/png;base64,/g) ?? []).length, 2 * 7);
  assert.match(html, 'T-shirt/top');
  assert.not.match(html, '<script');
  assert.equal(fs.readdirSync(run.dir).filter((f) => f.startsWith('.report-')), [], 'temp files removed');

  assert.not.match(html, 'Evaluation during training', 'no curve section without curve.json');
  fs.writeFileSync(path.join(run.dir, 'curve.json'), JSON.stringify(CURVE));
  const withCurve = fs.readFileSync(await writeReport({ run: run.dir, attentionImages: 0 }), 'utf8');
  assert.match(withCurve, 'Evaluation during training');
  assert.is((withCurve.match(/<svg /g) ?? []).length, 5);
  assert.is(polylines(withCurve).get('k-NN (k=20)')!.length, 5);
  assert.match(withCurve, /random-init teacher/);
  assert.match(withCurve, '10000 train images');
  assert.not.match(withCurve, /<script|<link|src="http/);

  fs.rmSync(path.join(run.dir, 'knn.json'));
  const again = fs.readFileSync(await writeReport({ run: run.dir, attentionImages: 0 }), 'utf8');
  assert.match(again, 'npx dino knn --run');
  assert.not.match(again, 'Attention maps');
  fs.rmSync(dir, { recursive: true, force: true });
});

test.run();
