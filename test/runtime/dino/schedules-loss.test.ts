/** Schedules against their closed forms; the DINO loss against a hand computation. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Graph } from '../../../dsl/index.ts';
import * as D from '../../../dsl/index.ts';
import { dinoLoss } from '../../../models/dino-loss.ts';
import { cosineSchedule, stepScalars, teacherTempSchedule } from '../../../runtime/dino/schedules.ts';
import { createSession, ort } from '../../../runtime/backend.ts';
import * as E from 'fp-ts/lib/Either.js';

test('cosine schedule: linspace warm-up then half cosine, as DINO utils.cosine_scheduler', () => {
  const total = 100, warm = 10, base = 0.5, final = 0.01;
  for (let i = 0; i < warm; i++) assert.ok(Math.abs(cosineSchedule(i, total, base, final, warm) - (base * i) / (warm - 1)) < 1e-12);
  for (let i = warm; i < total; i++) {
    const j = i - warm, n = total - warm;
    const want = final + 0.5 * (base - final) * (1 + Math.cos((Math.PI * j) / n));
    assert.ok(Math.abs(cosineSchedule(i, total, base, final, warm) - want) < 1e-12);
  }
  assert.is(cosineSchedule(0, 50, 0.996, 1), 0.996);
  assert.ok(cosineSchedule(49, 50, 0.996, 1) > 0.9999);
  assert.is(teacherTempSchedule(0, 0.04, 0.07, 30), 0.04);
  assert.ok(Math.abs(teacherTempSchedule(29, 0.04, 0.07, 30) - 0.07) < 1e-12);
  assert.is(teacherTempSchedule(100, 0.04, 0.07, 30), 0.07);
});

test('step scalars: last layer gated during the freeze, momentum rises to 1, wd rises to its end value', () => {
  const cfg = { steps: 50, batch: 256, lr: 1e-3, minLr: 1e-6, warmupFraction: 0.1, weightDecay: 0.04, weightDecayEnd: 0.4, momentumTeacher: 0.996, warmupTeacherTemp: 0.04, teacherTemp: 0.04, warmupTeacherTempSteps: 0, freezeLastLayerSteps: 3 };
  assert.is(stepScalars(cfg, 2)['gate.last_layer'], 0);
  assert.is(stepScalars(cfg, 3)['gate.last_layer'], 1);
  assert.is(stepScalars(cfg, 0)['lr'], 0);
  assert.ok(Math.abs(stepScalars(cfg, 4)['lr']! - 1e-3) < 1e-15);
  assert.ok(stepScalars(cfg, 49)['wd']! > 0.39);
});

function softmaxRow(x: number[], t: number): number[] {
  const m = Math.max(...x.map((v) => v / t));
  const e = x.map((v) => Math.exp(v / t - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

test('DINO loss: centering, both temperatures and the exclusion of same-view pairs, by hand', async () => {
  const B = 2, K = 3, V = 3; // 2 global + 1 local view
  const student = [0.3, -1.2, 0.5, 2.0, 0.1, -0.4, /* view 1 */ -0.7, 0.9, 0.2, 0.4, 0.4, -1.0, /* local */ 1.5, -0.3, 0.0, -0.2, 0.6, 0.8];
  const teacher = [0.2, 0.1, -0.3, -0.5, 0.8, 0.0, /* view 1 */ 0.6, -0.6, 0.1, 0.3, 0.3, -0.2];
  const center = [0.05, -0.1, 0.02];
  const tt = 0.04, ts = 0.1, m = 0.9;
  const row = (a: number[], v: number, b: number) => a.slice((v * B + b) * K, (v * B + b + 1) * K);
  let total = 0, n = 0;
  for (let i = 0; i < 2; i++) for (let v = 0; v < V; v++) {
    if (v === i) continue;
    let ce = 0;
    for (let b = 0; b < B; b++) {
      const pt = softmaxRow(row(teacher, i, b).map((x, k) => x - center[k]!), tt);
      const ps = softmaxRow(row(student, v, b), ts);
      ce += -pt.reduce((s, p, k) => s + p * Math.log(ps[k]!), 0);
    }
    total += ce / B; n++;
  }
  const wantLoss = total / n;
  const wantCenter = center.map((c, k) => m * c + (1 - m) * [0, 1, 2, 3].reduce((s, r) => s + teacher[r * K + k]!, 0) / 4);

  const g = new Graph('loss');
  const s = g.input('s', 'float32', [V * B, K]), t = g.input('t', 'float32', [2 * B, K]), c = g.input('c', 'float32', [1, K]), temp = g.input('tt', 'float32', []);
  const out = dinoLoss({ student: s, teacher: t, center: c, teacherTemp: temp, studentTemp: ts, centerMomentum: m, batch: B, views: V });
  g.output('loss', out.loss); g.output('center', out.nextCenter); g.output('entropy', out.teacherEntropy); g.output('kl', out.teacherKl);
  const session = await createSession((D.emitOnnx(g, { params: 'inputs' }) as E.Right<Uint8Array>).right);
  const r = await session.run({
    s: new ort.Tensor('float32', Float32Array.from(student), [V * B, K]), t: new ort.Tensor('float32', Float32Array.from(teacher), [2 * B, K]),
    c: new ort.Tensor('float32', Float32Array.from(center), [1, K]), tt: new ort.Tensor('float32', Float32Array.of(tt), []),
  });
  assert.ok(Math.abs(Number(r['loss']!.data[0]) - wantLoss) < 1e-4 * wantLoss, `${r['loss']!.data[0]} vs ${wantLoss}`);
  (r['center']!.data as Float32Array).forEach((v, k) => assert.ok(Math.abs(v - wantCenter[k]!) < 1e-6));
  const ent = Number(r['entropy']!.data[0]);
  assert.ok(ent >= 0 && ent <= Math.log(K));
  assert.ok(Number(r['kl']!.data[0]) >= 0);
});

test.run();
