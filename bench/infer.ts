/**
 * Inference of an exported teacher-like backbone: the ViT of the preset with its parameters baked in as
 * initializers (`emitOnnx(graph, { params: { values } })`), input `images` [batch, C, H, W] with a symbolic
 * batch, output the final-norm [CLS] features. Timed with onnxruntime-node and onnxruntime-web (WASM, from Node).
 */
import * as E from 'fp-ts/lib/Either.js';
import { Graph, Prng, Scope, emitOnnx, formatError, initialValues, specOf } from '../dsl/index.ts';
import { countFlops } from '../dsl/flops.ts';
import { type ViTConfig, visionTransformer } from '../models/vit.ts';
import { type ExecutionProvider, createSession, ort } from '../runtime/backend.ts';
import { createWebSession, ortWeb } from '../runtime/web.ts';
import { randomFloats, timeRepeated } from './measure.ts';

export type InferBackend = 'ort-node' | 'ort-web-wasm';

export interface InferPoint {
  readonly backend: InferBackend;
  readonly batch: number;
  readonly medianMs: number;
  readonly imagesPerS: number;
  readonly gflopsPerS: number;
  readonly cpuPerWall: number;
}

export interface TeacherModel {
  readonly bytes: Uint8Array;
  /** FLOPs of one image. */
  readonly flopsPerImage: number;
  readonly imageShape: readonly [number, number, number];
}

/** The teacher backbone as inference ONNX, parameters drawn from `seed` (their values do not change the cost). */
export function teacherModel(backbone: ViTConfig, seed = 0): TeacherModel {
  const g = new Graph('teacher_backbone');
  const shape = [backbone.inChans, backbone.imgSize, backbone.imgSize] as const;
  const images = g.input('images', 'float32', ['batch', ...shape]);
  g.output('features', visionTransformer(new Scope(g), images, backbone).cls);
  const values = initialValues([...g.params.values()].map(specOf), Prng.seeded(seed));
  const bytes = emitOnnx(g, { params: { values } });
  if (E.isLeft(bytes)) throw new Error(`teacher export: ${bytes.left.map(formatError).join('; ')}`);
  return { bytes: bytes.right, flopsPerImage: countFlops(g, { dims: { batch: 1 } }).total, imageShape: shape };
}

interface Runner {
  run(batch: number): Promise<unknown>;
  release(): Promise<void>;
}

async function nodeRunner(model: TeacherModel, ep: ExecutionProvider, threads: number): Promise<Runner> {
  const session = await createSession(model.bytes, { ep, threads });
  const feeds = new Map<number, ort.Tensor>();
  return {
    run: (b) => {
      let t = feeds.get(b);
      if (!t) feeds.set(b, (t = new ort.Tensor('float32', randomFloats(b * model.imageShape.reduce((x, y) => x * y, 1)), [b, ...model.imageShape])));
      return session.run({ images: t });
    },
    release: () => session.release(),
  };
}

async function webRunner(model: TeacherModel): Promise<Runner> {
  const session = await createWebSession(model.bytes);
  const feeds = new Map<number, ortWeb.Tensor>();
  return {
    run: (b) => {
      let t = feeds.get(b);
      if (!t) feeds.set(b, (t = new ortWeb.Tensor('float32', randomFloats(b * model.imageShape.reduce((x, y) => x * y, 1)), [b, ...model.imageShape])));
      return session.run({ images: t });
    },
    release: () => session.release(),
  };
}

/** Repetitions for a batch: enough images to average over, few enough to stay quick. */
const repsFor = (batch: number, scale: number) => Math.max(2, Math.round((batch === 1 ? 30 : batch <= 64 ? 8 : 4) * scale));

export async function benchInference(
  model: TeacherModel,
  opts: { ep: ExecutionProvider; threads: number; batches: readonly number[]; backends: readonly InferBackend[]; repScale?: number },
): Promise<InferPoint[]> {
  const points: InferPoint[] = [];
  for (const backend of opts.backends) {
    const runner = backend === 'ort-node' ? await nodeRunner(model, opts.ep, opts.threads) : await webRunner(model);
    try {
      for (const batch of opts.batches) {
        // WASM is several times slower: fewer repetitions at large batches.
        const scale = (opts.repScale ?? 1) * (backend === 'ort-web-wasm' && batch > 1 ? 0.5 : 1);
        const t = await timeRepeated(() => runner.run(batch), 1, repsFor(batch, scale));
        points.push({
          backend, batch, medianMs: t.medianMs, imagesPerS: (batch * 1000) / t.medianMs,
          gflopsPerS: (batch * model.flopsPerImage) / (t.medianMs * 1e6), cpuPerWall: t.cpuPerWall,
        });
      }
    } finally {
      await runner.release();
    }
  }
  return points;
}
