/** exports/report.ts: DIR/report.html with curves from metrics.jsonl, the k-NN table and attention maps. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { lineChart, niceTicks, readMetrics, writeReport } from '../../exports/report.ts';
import { makeRun, tempDir } from './helpers.ts';

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

  fs.rmSync(path.join(run.dir, 'knn.json'));
  const again = fs.readFileSync(await writeReport({ run: run.dir, attentionImages: 0 }), 'utf8');
  assert.match(again, 'npx dino knn --run');
  assert.not.match(again, 'Attention maps');
  fs.rmSync(dir, { recursive: true, force: true });
});

test.run();
