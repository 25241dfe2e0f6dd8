/**
 * Test helpers for exports/: a run folder in the format `dino train` writes (config.json,
 * checkpoint.safetensors with `student.backbone.*`, `teacher.backbone.*`, `center`, metadata; metrics.jsonl),
 * built from freshly initialised weights, so export and evaluation can be tested without training.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Prng, initialValues } from '../../dsl/index.ts';
import { backboneSpecs } from '../../exports/export/teacher.ts';
import { type TrainConfig } from '../../runtime/dino/config.ts';
import { getPreset } from '../../runtime/dino/presets.ts';
import { type NamedTensor, writeSafetensorsAtomic } from '../../runtime/io/safetensors.ts';
import { relativeError } from '../helpers/compare.ts';
export { relativeError };

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `dino-${prefix}-`));
}

export interface FakeRun {
  readonly dir: string;
  readonly config: TrainConfig;
  /** The state written, by name. */
  readonly state: Map<string, Float32Array>;
}

/**
 * Writes a run folder at `dir`: teacher and student backbones drawn from different seeds (so a test can tell
 * which one an export used), a center, and `steps` lines of metrics.
 */
export function makeRun(dir: string, opts: { preset?: string; config?: Partial<TrainConfig>; seed?: number; steps?: number } = {}): FakeRun {
  const config: TrainConfig = { ...getPreset(opts.preset ?? 'fmnist-tiny6'), ...opts.config };
  const specs = backboneSpecs(config.backbone);
  const seed = opts.seed ?? 1;
  const state = new Map<string, Float32Array>();
  for (const [network, s] of [['teacher', seed], ['student', seed + 1000]] as const) {
    for (const [name, v] of initialValues(specs, Prng.seeded(s))) state.set(`${network}.backbone.${name}`, v);
  }
  state.set('center', Float32Array.from({ length: config.head.outDim }, (_, i) => Math.sin(i)));
  const tensors = new Map<string, NamedTensor>();
  const shapes = new Map(specs.map((s) => [s.name, s.shape]));
  for (const [name, data] of state) {
    const key = name.replace(/^(teacher|student)\.backbone\./, '');
    tensors.set(name, { dtype: 'float32', shape: name === 'center' ? [1, data.length] : [...shapes.get(key)!], data });
  }
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
  const steps = opts.steps ?? 20;
  writeSafetensorsAtomic(path.join(dir, 'checkpoint.safetensors'), tensors, {
    format: 'dino-ts/1', config: JSON.stringify(config), step: String(steps), seed: String(config.seed),
  });
  const lines: string[] = [];
  for (let step = 1; step <= steps; step++) {
    lines.push(JSON.stringify({
      step, loss: 8.3 - 2 * Math.log1p(step / 5), teacher_entropy: 8.3 - Math.log1p(step), teacher_kl: 0.01 * step,
      grad_norm: 1 + 1 / step, lr: 1e-4 * step / steps, wd: 0.04, momentum: 0.996, teacher_temp: 0.04, images_per_s: 100,
    }));
  }
  fs.writeFileSync(path.join(dir, 'metrics.jsonl'), lines.join('\n') + '\n');
  return { dir, config, state };
}

/** Deterministic images in [0, 1]. */
export function randomImages(n: number, c: number, h: number, w: number, seed = 5): Float32Array {
  const prng = Prng.seeded(seed);
  return Float32Array.from({ length: n * c * h * w }, () => prng.uniform());
}

