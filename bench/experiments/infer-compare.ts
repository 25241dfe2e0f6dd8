/**
 * Inference of the teacher backbone (bench/infer.ts `teacherModel`) built by this tree and by scratch copies
 * with proposed changes, interleaved in one process, onnxruntime-node:
 *
 *   node --import tsx bench/experiments/infer-compare.ts --alt COPY_A,COPY_B [--batches 1,64,256] [--reps 10] [--threads 0]
 */
import { parseArgs } from 'node:util';
import { createSession, ort } from '../../runtime/backend.ts';
import { getPreset } from '../../runtime/dino/presets.ts';
import { median, randomFloats } from '../measure.ts';
import { teacherModel } from '../infer.ts';

const { values } = parseArgs({ options: { alt: { type: 'string', default: '' }, batches: { type: 'string', default: '1,64,256' }, reps: { type: 'string', default: '10' }, threads: { type: 'string', default: '0' } } });
const backbone = getPreset('fmnist-tiny6').backbone;
const dirs = values.alt!.split(',').filter(Boolean).map((d) => d.replace(/\/$/, ''));
const models = [{ name: 'this tree', model: teacherModel(backbone) }];
for (const dir of dirs) {
  const infer = (await import(`${dir}/bench/infer.ts`)) as typeof import('../infer.ts');
  models.push({ name: dir.split('/').pop()!, model: infer.teacherModel(backbone) });
}
const threads = Number(values.threads);
const sessions = await Promise.all(models.map(async (m) => ({ ...m, session: await createSession(m.model.bytes, { threads }) })));
for (const batch of values.batches!.split(',').map(Number)) {
  const x = new ort.Tensor('float32', randomFloats(batch * 784), [batch, 1, 28, 28]);
  for (const s of sessions) for (let i = 0; i < 2; i++) await s.session.run({ images: x });
  const reps = Math.max(3, Math.round(Number(values.reps) * (batch === 1 ? 5 : batch > 64 ? 0.5 : 1)));
  const samples = sessions.map(() => [] as number[]);
  for (let r = 0; r < reps; r++) {
    for (let k = 0; k < sessions.length; k++) {
      const i = (k + r) % sessions.length;
      const t0 = performance.now();
      await sessions[i]!.session.run({ images: x });
      samples[i]!.push(performance.now() - t0);
    }
  }
  console.log(`batch ${batch} (${reps} interleaved runs, ${threads || 'default'} threads)`);
  sessions.forEach((s, i) => {
    const ms = median(samples[i]!);
    console.log(`  ${s.name.padEnd(14)} ${ms.toFixed(2).padStart(9)} ms  ${((batch * 1000) / ms).toFixed(1).padStart(8)} img/s  ${((batch * s.model.flopsPerImage) / ms / 1e6).toFixed(1).padStart(6)} GFLOP/s  paired ratio ${median(samples[i]!.map((v, r) => v / samples[0]![r]!)).toFixed(3)}`);
  });
}
