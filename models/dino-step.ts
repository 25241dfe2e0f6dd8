/**
 * The DINO training step as one graph (DESIGN invariant 2):
 *   student on all crops (grouped by resolution) -> head; teacher (no gradient) on the 2 global crops;
 *   DINO loss with centering and sharpening; backward; per-parameter clipping; last layer gated;
 *   AdamW (no decay on biases and 1-D parameters); teacher EMA from the updated student; center EMA.
 *
 * State inputs are `student.<key>`, `teacher.<key>` (DINO's MultiCropWrapper keys: `backbone.blocks.0...`,
 * `head.mlp.0.weight`, ...), `center`, and the optimizer's `optim.*`. Scalar inputs: `lr`, `wd`,
 * `momentum` (teacher EMA), `teacher_temp`, `gate.last_layer` (0 while the last layer is frozen).
 */
import * as E from 'fp-ts/lib/Either.js';
import { type DslError, Graph, Scope, type Tensor, addOptimizerStep, concat, ema } from '../dsl/index.ts';
import { dinoLoss } from './dino-loss.ts';
import { type DinoHeadConfig, LAST_LAYER_TAG, dinoHead } from './head.ts';
import { backbone as backboneFeatures } from './network.ts';
import { type BackboneConfig, featureDim } from './presets.ts';
import type { Recompute } from './vit.ts';

export interface DinoStepConfig {
  readonly backbone: BackboneConfig;
  readonly head: DinoHeadConfig;
  /** Images per step (each contributes 2 global + `localCrops` local views). */
  readonly batch: number;
  readonly globalSize: number;
  readonly localSize: number;
  readonly localCrops: number;
  /** τ_s (DINO 0.1). */
  readonly studentTemp: number;
  /** Center EMA momentum (DINO 0.9). */
  readonly centerMomentum: number;
  /** Per-parameter gradient-norm clip (DINO 3.0); 0 disables. */
  readonly clipGrad: number;
  /**
   * Activations of the student's ViT blocks recomputed in the backward pass instead of kept (`Recompute`;
   * default `none`). fmnist-tiny6 at batch 64 (bench/RESULTS.md): `mlp` keeps ~190 MiB less for one GELU per
   * block; `blocks` keeps ~660 MiB less for ~17% more FLOPs per step.
   */
  readonly recompute?: Recompute;
}

export const STUDENT = 'student.';
export const TEACHER = 'teacher.';
export const CENTER = 'center';

/**
 * The backbone's features for a batch of crops (ViT: final-norm [CLS]; ResNet: pooled). BatchNorm runs in
 * training mode for student and teacher alike, as in DINO (the teacher module is never put in eval mode).
 */
function network(root: Scope, images: Tensor, cfg: DinoStepConfig, dropPathMasks?: Tensor, recompute: Recompute = 'none'): Tensor {
  return backboneFeatures(root.child('backbone'), images, cfg.backbone, { train: true, recompute, ...(dropPathMasks ? { dropPathMasks } : {}) }).features;
}

export interface DinoStepGraph {
  readonly graph: Graph;
  /** Input names of the crop batches and drop-path masks, with shapes. */
  readonly inputs: { readonly globals: Tensor; readonly locals?: Tensor; readonly dropGlobal?: Tensor; readonly dropLocal?: Tensor };
}

export function buildDinoStep(cfg: DinoStepConfig): E.Either<DslError[], DinoStepGraph> {
  const g = new Graph('dino_train_step');
  const { batch: b, backbone: bb } = cfg;
  const c = bb.inChans;
  const globals = g.input('globals', 'float32', [2 * b, c, cfg.globalSize, cfg.globalSize]);
  const locals = cfg.localCrops > 0 ? g.input('locals', 'float32', [cfg.localCrops * b, c, cfg.localSize, cfg.localSize]) : undefined;
  const depth = bb.kind === 'vit' && bb.dropPathRate > 0 ? bb.depth : 0;
  const dropGlobal = depth ? g.input('drop_path.globals', 'float32', [depth, 2, 2 * b]) : undefined;
  const dropLocal = depth && locals ? g.input('drop_path.locals', 'float32', [depth, 2, cfg.localCrops * b]) : undefined;
  const teacherTemp = g.input('teacher_temp', 'float32', []);
  const momentum = g.input('momentum', 'float32', []);

  // Student: the backbone once per resolution (DINO's MultiCropWrapper), the head once on all features.
  const student = new Scope(g, '', STUDENT);
  const recompute = cfg.recompute ?? 'none';
  const studentFeats = [network(student, globals, cfg, dropGlobal, recompute)];
  if (locals) studentFeats.push(network(student, locals, cfg, dropLocal, recompute));
  const studentLogits = dinoHead(student.child('head'), concat(studentFeats, 0), featureDim(bb), cfg.head, { train: true }).logits;

  // Teacher: same architecture, its own state, global crops only, no stochastic depth, never differentiated.
  const teacher = new Scope(g, '', TEACHER);
  const teacherLogits = dinoHead(teacher.child('head'), network(teacher, globals, cfg), featureDim(bb), cfg.head, { train: true }).logits;

  const center = g.param({ name: CENTER, shape: [1, cfg.head.outDim], dtype: 'float32', init: { kind: 'zeros' }, decay: false, trainable: false, tags: [], kind: 'buffer' });
  const dino = g.within('dino_loss', () =>
    dinoLoss({
      student: studentLogits, teacher: teacherLogits, center, teacherTemp,
      studentTemp: cfg.studentTemp, centerMomentum: cfg.centerMomentum, batch: b, views: 2 + cfg.localCrops,
    }),
  );

  const opt = addOptimizerStep(g, {
    loss: dino.loss,
    optimizer: { kind: 'adamw' },
    ...(cfg.clipGrad > 0 ? { clipGrad: cfg.clipGrad } : {}),
    select: (name, spec) => name.startsWith(STUDENT) && spec.kind === 'param' && spec.trainable,
    gateOf: (_, spec) => (spec.tags.includes(LAST_LAYER_TAG) ? LAST_LAYER_TAG : undefined),
  });
  if (E.isLeft(opt)) return opt;

  // Teacher EMA from the *updated* student (DINO updates the teacher after optimizer.step()).
  g.within('teacher_ema', () => {
    for (const [name, next] of opt.right.updated) {
      const teacherName = TEACHER + name.slice(STUDENT.length);
      const t = g.params.get(teacherName);
      if (!t) continue; // a student-only parameter (none in DINO)
      g.output(`next.${teacherName}`, ema(t, next, momentum));
    }
  });
  // Student-side buffers (BatchNorm running stats) are emitted by addOptimizerStep via bufferUpdates.
  g.output(`next.${CENTER}`, dino.nextCenter);
  g.output('metric.loss', dino.loss);
  g.output('metric.teacher_entropy', dino.teacherEntropy);
  g.output('metric.teacher_kl', dino.teacherKl);
  g.output('metric.grad_norm', opt.right.gradNorm);

  const inputs = { globals, ...(locals ? { locals } : {}), ...(dropGlobal ? { dropGlobal } : {}), ...(dropLocal ? { dropLocal } : {}) };
  return E.map(() => ({ graph: g, inputs }))(g.validate());
}

/** Teacher state initialised as an exact copy of the student (DINO: teacher.load_state_dict(student.state_dict())). */
export function teacherFromStudent(values: Map<string, Float32Array>): void {
  for (const [name, v] of [...values]) {
    if (name.startsWith(STUDENT)) values.set(TEACHER + name.slice(STUDENT.length), Float32Array.from(v));
  }
}

