/**
 * The DINO training step as one graph (docs/ARCHITECTURE.md, "Training step graphs"):
 *   student on all crops (grouped by resolution) -> head; teacher (no gradient) on the 2 global crops;
 *   DINO loss with centering and sharpening; backward; per-parameter clipping; last layer gated;
 *   AdamW (no decay on biases and 1-D parameters); teacher EMA from the updated student; center EMA.
 *
 * State inputs are `student.<key>`, `teacher.<key>` (DINO's MultiCropWrapper keys: `backbone.blocks.0...`,
 * `head.mlp.0.weight`, ...), `center`, and the optimizer's `optim.*`. The other inputs and the outputs are
 * typed below ({@link DinoStepInputs}, {@link ScheduledScalars}, {@link DinoMetrics}): the training loop, the
 * bench and the schedules use these types, so a new input or metric is one edit here that `tsc` follows.
 * The data-parallel form of the step, two graphs around an all-reduce, is models/dino-step-split.ts: it shares
 * `dinoForward` and builds each loss term from its `split` form.
 */
import * as E from 'fp-ts/lib/Either.js';
import { ANY_TARGET, type DslError, GRAD_SCALER_DEFAULTS, Graph, type LossScaling, METRIC, NEXT, type Precision, Scope, type Target, type Tensor, add, addOptimizerStep, concat, ema, mul, slice, usesLossScaling } from '../dsl/index.ts';
import { CENTERINGS, type Centering, centerUpdate, dinoLoss, dinoLossShares, teacherKlFromShares } from './dino-loss.ts';
import { koleoLoss } from './koleo.ts';
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
   * default `none`): less memory for more compute, the same numbers (measured in bench/RESULTS.md).
   */
  readonly recompute?: Recompute;
  /**
   * `fp16`: mixed precision as DINO's `--use_fp16 true` (PyTorch autocast + GradScaler): the matrix products of
   * student and teacher run in float16 (dsl/autocast.ts), the rest and the weights stay float32, and the loss is
   * scaled dynamically (dsl/train/loss-scale.ts). `bf16`: the products in bfloat16 as PyTorch's autocast with
   * dtype=torch.bfloat16, without loss scaling (bfloat16 has float32's range). `fp16-emulated`, `bf16-emulated`:
   * the same numbers computed in float32, for CPU tests. Default `fp32`: the graph is the one built before this option.
   */
  readonly precision?: Precision;
  /**
   * With `fp16` (or emulated): the scaler's settings over GradScaler's defaults (tests shorten `growthInterval`).
   * Ignored by precisions without loss scaling (`usesLossScaling`), as fp32 ignores it.
   */
  readonly lossScaling?: Partial<LossScaling>;
  /**
   * Weight of the KoLeo regulariser (models/koleo.ts) on the student's backbone features of each global view,
   * added to the DINO loss as in DINOv2 (weight 0.1 there). Default 0: not in the graph.
   */
  readonly koleoWeight?: number;
  /**
   * How the teacher's targets are made (`DinoLossInputs.centering`): `center` (default, DINO) subtracts the running
   * center before the softmax; `sinkhorn` balances the batch over the prototypes with Sinkhorn-Knopp (DINOv2). The
   * center stays state and is updated either way; the default builds the graph from before the option, byte for byte.
   */
  readonly centering?: Centering;
}

export const STUDENT = 'student.';
export const TEACHER = 'teacher.';
export const CENTER = 'center';

/**
 * The scheduled hyper-parameters: float32 scalar inputs of every step, one value per step, computed by
 * runtime/dino/schedules.ts (`stepScalars` returns exactly these keys). `lr`, `wd` and the gate are the
 * optimizer's inputs (dsl/train/step.ts), `momentum` and `teacher_temp` this graph's; `buildDinoStep` checks
 * that the graph's scalar inputs are exactly this list, so a new one is added here and `tsc` points at the
 * schedule that must produce it.
 */
export const SCHEDULED_SCALARS = ['lr', 'wd', 'momentum', 'teacher_temp', `gate.${LAST_LAYER_TAG}`] as const;
export type ScheduledScalar = (typeof SCHEDULED_SCALARS)[number];
export type ScheduledScalars = { readonly [K in ScheduledScalar]: number };

/**
 * The per-step batch inputs by graph-input name: the crops of each resolution and the stochastic-depth masks
 * ([depth, 2, crops]: attention and MLP branch of each block). `locals` only with local crops; the masks only
 * for a ViT with drop path. `T` is what stands for each: shapes here, tensors in the graph, ORT tensors at run time.
 */
export type DinoStepInputs<T> = {
  readonly globals: T;
  readonly locals?: T;
  readonly 'drop_path.globals'?: T;
  readonly 'drop_path.locals'?: T;
};

/**
 * What a term of the step's loss is built from: the step's tensors (student and teacher head outputs, the center,
 * τ_t, the student backbone's features per crop resolution) and its config.
 */
export interface LossTermInputs {
  readonly cfg: DinoStepConfig;
  /** Student logits [V*B, K], view-major, the 2 global views first. */
  readonly studentLogits: Tensor;
  /** Teacher logits [2*B, K] on the global views (no gradient flows into the teacher). */
  readonly teacherLogits: Tensor;
  /** The DINO center [1, K] (state). */
  readonly center: Tensor;
  readonly teacherTemp: Tensor;
  /** The student backbone's features: [0] of the global crops [2*B, D] (view-major), [1] of the local crops. */
  readonly studentFeatures: readonly Tensor[];
}

/** A term's value, its metrics, and the new values of state it updates (graph-input name -> tensor). */
export interface LossTermOutput<M extends string> {
  readonly value: Tensor;
  readonly metrics: { readonly [K in M]: Tensor };
  readonly updates?: ReadonlyMap<string, Tensor>;
}

/**
 * A term's data-parallel form (models/dino-step-split.ts, docs/DISTRIBUTED.md): in each rank's gradient graph, the
 * rank's share of the term and the quantities summed over ranks with the gradients; in the apply graph, the term's
 * metrics and state updates from those sums. Shares are sums over the rank's images divided by the global batch's
 * count, so that the ranks' sum is what one process computes on the whole batch.
 */
export interface SplitLossTerm<M extends string> {
  /** Why the term cannot be split for `cfg`, naming the option; undefined when it can. */
  refusal?(cfg: DinoStepConfig): string | undefined;
  /**
   * In the gradient graph: this rank's share of the term's value (its gradient is what the ranks sum) and the
   * float32 quantities to sum, by name (prefixed `<term name>.`).
   */
  share(inputs: LossTermInputs, globalBatch: number): { readonly value: Tensor; readonly sums: ReadonlyMap<string, Tensor> };
  /**
   * In the apply graph: the metrics (each the value one process reports for the whole batch) and the state updates,
   * from the summed quantities; `state(name)` is the apply graph's input for the state tensor of that name.
   */
  finish(sums: ReadonlyMap<string, Tensor>, state: (name: string) => Tensor, cfg: DinoStepConfig): Omit<LossTermOutput<M>, 'value'>;
}

/**
 * A term of the step's loss. The loss is the sum of `weight * value` over the terms of nonzero weight, each built
 * under the node path `<name>_loss`; each term's metrics are step outputs. A term of weight 0 is not in the graph,
 * so configs without it build the graph from before the term, byte for byte.
 */
export interface LossTerm<M extends string = string> {
  readonly name: string;
  weight(cfg: DinoStepConfig): number;
  build(inputs: LossTermInputs): LossTermOutput<M>;
  /** The names of the metrics it reports, in output order. */
  readonly metrics: readonly M[];
  /** Its data-parallel form; without one, a data-parallel step with the term is refused with `unsplittable`. */
  readonly split?: SplitLossTerm<M>;
  /** Why the term has no data-parallel form, naming the option that adds it to a step. */
  readonly unsplittable?: string;
}

/** DINO's cross-entropy between teacher and student views, with its center update and collapse metrics. */
const DINO_TERM: LossTerm<'loss' | 'teacher_entropy' | 'teacher_kl'> = {
  name: 'dino',
  weight: () => 1,
  metrics: ['loss', 'teacher_entropy', 'teacher_kl'],
  build: ({ cfg, studentLogits, teacherLogits, center, teacherTemp }) => {
    const centering = cfg.centering ?? 'center';
    const dino = dinoLoss({
      student: studentLogits, teacher: teacherLogits, center, teacherTemp,
      studentTemp: cfg.studentTemp, centerMomentum: cfg.centerMomentum, batch: cfg.batch, views: 2 + cfg.localCrops,
      ...(centering === 'sinkhorn' ? { centering } : {}),
    });
    return {
      value: dino.loss,
      metrics: { loss: dino.loss, teacher_entropy: dino.teacherEntropy, teacher_kl: dino.teacherKl },
      updates: new Map([[CENTER, dino.nextCenter]]),
    };
  },
  split: {
    refusal: (cfg) =>
      (cfg.centering ?? 'center') === 'sinkhorn'
        ? 'centering "sinkhorn" normalises the teacher\'s targets over the whole batch (Sinkhorn-Knopp iterations), which one all-reduce of sums cannot carry: use centering "center" or train in one process'
        : undefined,
    share: ({ cfg, studentLogits, teacherLogits, center, teacherTemp }, globalBatch) => {
      const s = dinoLossShares({ student: studentLogits, teacher: teacherLogits, center, teacherTemp, studentTemp: cfg.studentTemp, batch: cfg.batch, views: 2 + cfg.localCrops }, globalBatch);
      return {
        value: s.loss,
        sums: new Map([['dino.loss', s.loss], ['dino.teacher_entropy', s.teacherEntropy], ['dino.teacher_probs', s.teacherProbs], ['dino.teacher_mean', s.teacherMean]]),
      };
    },
    finish: (sums, state, cfg) => {
      const sum = (name: string) => sums.get(name) ?? missingSum(name);
      const entropy = sum('dino.teacher_entropy');
      return {
        metrics: { loss: sum('dino.loss'), teacher_entropy: entropy, teacher_kl: teacherKlFromShares(entropy, sum('dino.teacher_probs')) },
        updates: new Map([[CENTER, centerUpdate(state(CENTER), sum('dino.teacher_mean'), cfg.centerMomentum)]]),
      };
    },
  },
};

function missingSum(name: string): never {
  throw new Error(`the packed buffer has no sum "${name}": the gradient graph and the apply graph disagree`);
}

/**
 * KoLeo (DINOv2) on the student's backbone features of each global view separately (the two crops of one image
 * must not be each other's neighbour); its metric is the unweighted value, summed over the two views.
 */
const KOLEO_TERM: LossTerm<'koleo'> = {
  name: 'koleo',
  weight: (cfg) => Math.max(cfg.koleoWeight ?? 0, 0),
  metrics: ['koleo'],
  build: ({ cfg: { batch: b }, studentFeatures: [globals] }) => {
    const koleo = add(koleoLoss(slice(globals!, [0], [b], [0])), koleoLoss(slice(globals!, [b], [2 * b], [0])));
    return { value: koleo, metrics: { koleo } };
  },
  unsplittable:
    'koleoWeight > 0: KoLeo relates each image to its nearest neighbour in the whole batch, which a rank holding a slice cannot see: set koleoWeight to 0 or train in one process',
};

/**
 * The step's loss terms: DINO's first (its metrics lead the step's, `DINO_METRICS`), then the optional ones. A new
 * term is its module (the term's value as graph code) plus an entry here, with its weight in `DinoStepConfig`.
 */
export const LOSS_TERMS = [DINO_TERM, KOLEO_TERM] as const;
type TermMetric<T> = T extends LossTerm<infer M> ? M : never;

/** The metrics each step returns, as outputs `metric.<name>` (dsl/train/step.ts `METRIC`): DINO's and the optimizer's. */
export const DINO_METRICS = [...DINO_TERM.metrics, 'grad_norm'] as const satisfies readonly string[];
export type DinoMetric = TermMetric<typeof DINO_TERM> | 'grad_norm';
/**
 * Metrics of loss-scaled steps only (`fp16`, `usesLossScaling`): the loss scale the step used, and 1 when its update
 * was skipped (an Inf or NaN gradient: student, moments, step counts, teacher and center kept their values; the
 * scale halved). fp32 and bf16 steps have no scaler, so no such outputs: a `metrics.jsonl` row has them exactly
 * when the step could skip.
 */
export const AMP_METRICS = ['loss_scale', 'skipped'] as const;
export type AmpMetric = (typeof AMP_METRICS)[number];
/** Metrics of steps with a KoLeo term: its value (unweighted, summed over the two global views); `loss` stays DINO's. */
export const KOLEO_METRICS = KOLEO_TERM.metrics;
/** The metrics of the optional loss terms, present in a step whose config gives the term a weight. */
export type TermMetrics = TermMetric<(typeof LOSS_TERMS)[number]>;
export type KoleoMetric = TermMetric<typeof KOLEO_TERM>;
export type DinoMetrics = { readonly [K in DinoMetric]: number } & { readonly [K in AmpMetric | Exclude<TermMetrics, DinoMetric>]?: number };

/** The loss terms in the step `cfg` describes (nonzero weight), with their weights. */
export const activeTerms = (cfg: Partial<DinoStepConfig>) =>
  LOSS_TERMS.map((term) => ({ term: term as LossTerm, weight: term.weight(cfg as DinoStepConfig) })).filter((t) => t.weight > 0);

/**
 * The metric outputs of a step in `precision` with the loss terms `cfg` weights, in output order: what
 * `buildDinoStep` emits and a run records. DINO's metrics, the optimizer's gradient norm, the loss scaler's, then
 * the other terms'.
 */
export function dinoMetricNames(precision: Precision = 'fp32', cfg: Pick<DinoStepConfig, 'koleoWeight'> = {}): readonly (DinoMetric | AmpMetric | TermMetrics)[] {
  const termMetrics = activeTerms(cfg).filter((t) => t.term !== DINO_TERM).flatMap((t) => t.term.metrics as readonly TermMetrics[]);
  return [...DINO_METRICS, ...(usesLossScaling(precision) ? AMP_METRICS : []), ...termMetrics];
}

/** Shapes of the batch inputs of the step `cfg` describes (the graph and the feed builder both use them). */
export function dinoStepInputShapes(cfg: DinoStepConfig): DinoStepInputs<readonly number[]> {
  const { batch: b, backbone: bb } = cfg;
  const c = bb.inChans, locals = cfg.localCrops * b;
  const depth = bb.kind === 'vit' && bb.dropPathRate > 0 ? bb.depth : 0;
  return {
    globals: [2 * b, c, cfg.globalSize, cfg.globalSize],
    ...(locals > 0 ? { locals: [locals, c, cfg.localSize, cfg.localSize] } : {}),
    ...(depth ? { 'drop_path.globals': [depth, 2, 2 * b] } : {}),
    ...(depth && locals > 0 ? { 'drop_path.locals': [depth, 2, locals] } : {}),
  };
}

/**
 * The backbone's features for a batch of crops (ViT: final-norm [CLS]; ResNet: pooled). BatchNorm runs in
 * training mode for student and teacher alike, as in DINO (the teacher module is never put in eval mode).
 */
function network(root: Scope, images: Tensor, cfg: DinoStepConfig, dropPathMasks?: Tensor, recompute: Recompute = 'none'): Tensor {
  return backboneFeatures(root.child('backbone'), images, cfg.backbone, { train: true, recompute, ...(dropPathMasks ? { dropPathMasks } : {}) }).features;
}

export interface DinoStepGraph {
  readonly graph: Graph;
  /** The batch inputs, with shapes. */
  readonly inputs: DinoStepInputs<Tensor>;
  /** The scheduled scalar inputs. */
  readonly scalars: { readonly [K in ScheduledScalar]: Tensor };
}

/** A config's centering, refused by name when it is not one of CENTERINGS. */
export function centeringRefusal(cfg: DinoStepConfig): DslError | undefined {
  const centering = cfg.centering ?? 'center';
  // Reachable from a hand-edited config.json, which is parsed without a type check.
  if (CENTERINGS.includes(centering)) return undefined;
  return { op: 'dino_step', path: '', message: `centering must be one of ${CENTERINGS.join(', ')}, got ${JSON.stringify(centering)}`, shapes: [] };
}

/** The forward half of a DINO step: its inputs, student and teacher, the center, what the loss terms are built from. */
export interface DinoForward {
  readonly graph: Graph;
  readonly inputs: DinoStepInputs<Tensor>;
  readonly termInputs: LossTermInputs;
  /** The teacher's EMA momentum input, where asked for. */
  readonly momentum: Tensor;
}

/**
 * The step's inputs, the student on all crops (grouped by resolution) and the teacher on the global crops, and the
 * center: what the one-graph step (`buildDinoStep`) and the data-parallel gradient graph (models/dino-step-split.ts)
 * share. `momentum`: whether to add the teacher-momentum input (the gradient graph has no teacher update).
 */
export function dinoForward(cfg: DinoStepConfig, target: Target, name: string, opts: { momentum: true }): DinoForward;
export function dinoForward(cfg: DinoStepConfig, target: Target, name: string, opts: { momentum: false }): Omit<DinoForward, 'momentum'>;
export function dinoForward(cfg: DinoStepConfig, target: Target, name: string, opts: { momentum: boolean }): Omit<DinoForward, 'momentum'> & { momentum?: Tensor } {
  const g = new Graph(name, target);
  const bb = cfg.backbone;
  const shapes = dinoStepInputShapes(cfg);
  const input = (name: keyof DinoStepInputs<unknown>) => {
    const shape = shapes[name];
    return shape ? g.input(name, 'float32', [...shape]) : undefined;
  };
  const globals = input('globals')!;
  const locals = input('locals');
  const dropGlobal = input('drop_path.globals');
  const dropLocal = input('drop_path.locals');
  const teacherTemp = g.input('teacher_temp', 'float32', []);
  const momentum = opts.momentum ? g.input('momentum', 'float32', []) : undefined;

  // Student: the backbone once per resolution (DINO's MultiCropWrapper), the head once on all features.
  const precision = cfg.precision ?? 'fp32';
  const student = new Scope(g, '', STUDENT, precision);
  const recompute = cfg.recompute ?? 'none';
  const studentFeats = [network(student, globals, cfg, dropGlobal, recompute)];
  if (locals) studentFeats.push(network(student, locals, cfg, dropLocal, recompute));
  const studentLogits = dinoHead(student.child('head'), concat(studentFeats, 0), featureDim(bb), cfg.head, { train: true }).logits;

  // Teacher: same architecture, its own state, global crops only, no stochastic depth, never differentiated.
  const teacher = new Scope(g, '', TEACHER, precision);
  const teacherLogits = dinoHead(teacher.child('head'), network(teacher, globals, cfg), featureDim(bb), cfg.head, { train: true }).logits;

  const center = g.param({ name: CENTER, shape: [1, cfg.head.outDim], dtype: 'float32', init: { kind: 'zeros' }, decay: false, trainable: false, tags: [], kind: 'buffer' });
  const termInputs: LossTermInputs = { cfg, studentLogits, teacherLogits, center, teacherTemp, studentFeatures: studentFeats };
  const inputs: DinoStepInputs<Tensor> = {
    globals, ...(locals ? { locals } : {}), ...(dropGlobal ? { 'drop_path.globals': dropGlobal } : {}), ...(dropLocal ? { 'drop_path.locals': dropLocal } : {}),
  };
  return { graph: g, inputs, termInputs, ...(momentum ? { momentum } : {}) };
}

/**
 * DINO's training step for `cfg`, lowered for `target` (what the machine that runs it offers, dsl/graph.ts `Target`;
 * runtime/ep/records.ts has one per execution provider). The step is written once: the target only decides how
 * ops it lacks are built.
 */
export function buildDinoStep(cfg: DinoStepConfig, target: Target = ANY_TARGET): E.Either<DslError[], DinoStepGraph> {
  const refused = centeringRefusal(cfg);
  if (refused) return E.left([refused]);
  const { graph: g, inputs, termInputs, momentum } = dinoForward(cfg, target, 'dino_train_step', { momentum: true });
  const { teacherTemp } = termInputs;
  const precision = cfg.precision ?? 'fp32';
  const terms = activeTerms(cfg).map(({ term, weight }) => ({ term, weight, out: g.within(`${term.name}_loss`, () => term.build(termInputs)) }));
  const loss = terms.map(({ out, weight }) => (weight === 1 ? out.value : mul(out.value, weight))).reduce((sum, t) => add(sum, t));

  const opt = addOptimizerStep(g, {
    loss,
    optimizer: { kind: 'adamw' },
    ...(cfg.clipGrad > 0 ? { clipGrad: cfg.clipGrad } : {}),
    select: (name, spec) => name.startsWith(STUDENT) && spec.kind === 'param' && spec.trainable,
    gateOf: (_, spec) => (spec.tags.includes(LAST_LAYER_TAG) ? LAST_LAYER_TAG : undefined),
    ...(usesLossScaling(precision) ? { lossScaling: { ...GRAD_SCALER_DEFAULTS, ...cfg.lossScaling } } : {}),
  });
  if (E.isLeft(opt)) return opt;
  const scalarInputs = new Map<string, Tensor>([...opt.right.scalars, ['momentum', momentum], ['teacher_temp', teacherTemp]]);
  const missing = SCHEDULED_SCALARS.filter((n) => !scalarInputs.has(n));
  const extra = [...scalarInputs.keys()].filter((n) => !(SCHEDULED_SCALARS as readonly string[]).includes(n));
  if (missing.length || extra.length) {
    // A programming error, not a config error: the list above and the graph disagree.
    return E.left([{ op: 'dino_step', path: '', message: `scalar inputs disagree with SCHEDULED_SCALARS: missing ${missing.join(', ') || 'none'}, not listed ${extra.join(', ') || 'none'}`, shapes: [] }]);
  }
  const scalars = Object.fromEntries(SCHEDULED_SCALARS.map((n) => [n, scalarInputs.get(n)!])) as DinoStepGraph['scalars'];

  // Teacher EMA from the *updated* student (DINO updates the teacher after optimizer.step()). A step skipped by
  // the loss scaler keeps the teacher and the center as well, so an overflow leaves the whole state as it was.
  const scaling = opt.right.lossScaling;
  const keep = (next: Tensor, previous: Tensor) => (scaling ? scaling.keep(next, previous) : next);
  g.within('teacher_ema', () => {
    for (const [name, next] of opt.right.updated) {
      const teacherName = TEACHER + name.slice(STUDENT.length);
      const t = g.params.get(teacherName);
      if (!t) continue; // a student-only parameter (none in DINO)
      g.output(NEXT + teacherName, keep(ema(t, next, momentum), t));
    }
  });
  // Student-side buffers (BatchNorm running stats) are emitted by addOptimizerStep via bufferUpdates.
  for (const { out } of terms) {
    for (const [name, next] of out.updates ?? []) g.output(NEXT + name, keep(next, g.params.get(name)!));
  }
  const amp: { readonly [K in AmpMetric]: Tensor } | undefined = scaling && { loss_scale: scaling.scale, skipped: scaling.skipped };
  const metrics: Readonly<Record<string, Tensor>> = { ...Object.assign({}, ...terms.map((t) => t.out.metrics)), grad_norm: opt.right.gradNorm, ...amp };
  for (const name of dinoMetricNames(precision, cfg)) {
    const t = metrics[name];
    // The names and the tensors derive from the same facts (the terms' weights, usesLossScaling).
    if (!t) throw new Error(`buildDinoStep: no tensor for metric ${name} in precision ${precision}`);
    g.output(METRIC + name, t);
  }

  return E.map(() => ({ graph: g, inputs, scalars }))(g.validate());
}

/** Teacher state initialised as an exact copy of the student (DINO: teacher.load_state_dict(student.state_dict())). */
export function teacherFromStudent(values: Map<string, Float32Array>): void {
  for (const [name, v] of [...values]) {
    if (name.startsWith(STUDENT)) values.set(TEACHER + name.slice(STUDENT.length), Float32Array.from(v));
  }
}
