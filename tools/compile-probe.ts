/**
 * Compile time and ONNX size of training-step graphs (the compile-time figures of bench/RESULTS.md):
 *   npx tsx tools/compile-probe.ts
 */
import * as E from 'fp-ts/lib/Either.js';
import { emitOnnx } from '../dsl/index.ts';
import { buildDinoStep } from '../models/dino-step.ts';
import { getPreset as getModelPreset } from '../models/presets.ts';
import { stepConfig } from '../runtime/dino/config.ts';
import { getPreset } from '../runtime/dino/presets.ts';
import { createSession } from '../runtime/backend.ts';

const cases = [
  { name: 'fmnist-tiny6, batch 64, 2x28px + 6x12px', cfg: stepConfig(getPreset('fmnist-tiny6')) },
  {
    name: 'vit_small/16, 224px, batch 64, 2x224px + 10x96px',
    cfg: { ...stepConfig(getPreset('fmnist-tiny6')), ...getModelPreset('vit_small'), globalSize: 224, localSize: 96, localCrops: 10 },
  },
];
for (const c of cases) {
  const t0 = performance.now();
  const built = buildDinoStep(c.cfg as never);
  if (E.isLeft(built)) throw new Error(JSON.stringify(built.left));
  const t1 = performance.now();
  const bytes = emitOnnx(built.right.graph, { params: 'inputs' });
  if (E.isLeft(bytes)) throw new Error('emit failed');
  const t2 = performance.now();
  const s = await createSession(bytes.right);
  const t3 = performance.now();
  await s.release();
  console.log(`${c.name}: ${built.right.graph.nodes.length} nodes, ONNX ${(bytes.right.length / 1e6).toFixed(2)} MB; build ${((t1 - t0) / 1000).toFixed(2)} s, emit ${((t2 - t1) / 1000).toFixed(2)} s, ORT session ${((t3 - t2) / 1000).toFixed(2)} s`);
}
