/**
 * Which ways of writing exact GELU does ONNX Runtime fuse into its one-kernel Gelu? Each form is compiled with
 * graph optimisation 'all' and the optimised model's op types are printed:
 *
 *   node --import tsx bench/experiments/gelu-fusion.ts
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import { Graph, type Tensor, add, decodeOnnx, div, emitOnnx, erf, gelu, mul } from '../../dsl/index.ts';
import { ort } from '../../runtime/backend.ts';

const forms: Record<string, (x: Tensor) => Tensor> = {
  'dsl gelu()': gelu,
  '0.5x * (erf(x * (1/sqrt 2)) + 1)': (x) => mul(mul(x, 0.5), add(erf(mul(x, Math.SQRT1_2)), 1)),
  '0.5x * (erf(x / sqrt 2) + 1)': (x) => mul(mul(x, 0.5), add(erf(div(x, Math.SQRT2)), 1)),
  '(x * (erf(x / sqrt 2) + 1)) * 0.5': (x) => mul(mul(x, add(erf(div(x, Math.SQRT2)), 1)), 0.5),
};

const dir = mkdtempSync(path.join(os.tmpdir(), 'gelu-fusion-'));
try {
  for (const [name, f] of Object.entries(forms)) {
    const g = new Graph('gelu');
    g.output('y', f(g.input('x', 'float32', [4, 8])));
    const bytes = emitOnnx(g, { params: 'inputs' });
    if (E.isLeft(bytes)) throw new Error(`${name}: emission failed`);
    const file = path.join(dir, 'optimized.onnx');
    await ort.InferenceSession.create(bytes.right, { graphOptimizationLevel: 'all', optimizedModelFilePath: file, logSeverityLevel: 3 });
    const ops = (decodeOnnx(new Uint8Array(readFileSync(file))).graph.node as { op_type: string }[]).map((n) => n.op_type);
    console.log(`${name.padEnd(36)} -> ${ops.join(' ')}`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
