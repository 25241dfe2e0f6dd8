/**
 * DINO's training step for data parallelism (docs/DISTRIBUTED.md): the one-graph step of models/dino-step.ts cut into
 * the two graphs of dsl/train/split-step.ts, so that N ranks, each on its slice of the global batch, train as one
 * process on the whole batch (to float32 reduction order).
 *
 * - Gradient graph (every rank, on its `cfg.batch` images): student on all crops and teacher on the global crops,
 *   each loss term's share (its `split.share`), the backward pass; one output `packed`: the gradients of the
 *   student's trained parameters, then the terms' summed quantities (DINO: loss, teacher entropy, the batch's
 *   teacher-logit and target-distribution sums, each over the global batch's count).
 * - Apply graph (every rank, on the all-reduced `packed`): per-parameter clipping of the summed gradient, AdamW,
 *   the last-layer gate, the teacher EMA from the updated student, each term's `split.finish` (DINO: the center
 *   update and the metrics), and the gradient norm; with fp16, GradScaler's unscale / skip / scale update.
 *
 * The single-process road (`buildDinoStep`) is untouched: a run without MPI compiles the same one graph as before.
 */
import * as E from 'fp-ts/lib/Either.js';
import {
  ANY_TARGET, type DslError, GRAD_SCALER_DEFAULTS, type Graph, METRIC, NEXT, PACKED, type PackedLayout, type Target, type Tensor, add, addGradientOutputs, buildApplyGraph, ema, mul, specOf,
  usesLossScaling,
} from '../dsl/index.ts';
import {
  type DinoStepConfig, type DinoStepInputs, type ScheduledScalar, STUDENT, TEACHER, activeTerms, centeringRefusal, dinoForward, dinoMetricNames,
} from './dino-step.ts';
import { LAST_LAYER_TAG } from './head.ts';

export interface DinoSplitOptions {
  /** Ranks sharing each global batch; `cfg.batch` is each rank's images (DINO's --batch_size_per_gpu). */
  readonly ranks: number;
}

/** The scalar inputs each graph of the split step reads. */
export const GRADIENT_SCALARS = ['teacher_temp'] as const satisfies readonly ScheduledScalar[];
export const APPLY_SCALARS = ['lr', 'wd', 'momentum', `gate.${LAST_LAYER_TAG}`] as const satisfies readonly ScheduledScalar[];
// Together they are SCHEDULED_SCALARS: a scheduled scalar in neither list fails to type-check here.
const everyScalarRead: [Exclude<ScheduledScalar, (typeof GRADIENT_SCALARS)[number] | (typeof APPLY_SCALARS)[number]>] extends [never] ? true : never = true;
void everyScalarRead;

export interface DinoSplitStep {
  /** Every rank's forward and backward on its slice; output `packed`. */
  readonly gradient: Graph;
  /** The update from the summed `packed`: `next.*` state and the step's `metric.*` (those of `dinoMetricNames`). */
  readonly apply: Graph;
  readonly layout: PackedLayout;
  /** The gradient graph's batch inputs, shaped for one rank's `cfg.batch` images. */
  readonly inputs: DinoStepInputs<Tensor>;
  readonly ranks: number;
  /** Images per step over all ranks: `cfg.batch * ranks`. */
  readonly globalBatch: number;
}

const refuse = (message: string): E.Either<DslError[], never> => E.left([{ op: 'dino_step_split', path: '', message, shapes: [] }]);

/**
 * The data-parallel step of `cfg` for `ranks` ranks, lowered for `target`; with `precision` fp16 the loss is scaled
 * dynamically as in the one-graph step. Refused, with the option named: loss terms without a data-parallel form
 * (KoLeo), Sinkhorn centering, and, with more than one rank, batch normalisation (its batch statistics would be each
 * rank's own).
 */
export function buildDinoStepSplit(cfg: DinoStepConfig, target: Target = ANY_TARGET, opts: DinoSplitOptions): E.Either<DslError[], DinoSplitStep> {
  const { ranks } = opts;
  if (!Number.isInteger(ranks) || ranks < 1) return refuse(`ranks must be a positive integer, got ${ranks}`);
  const centering = centeringRefusal(cfg);
  if (centering) return E.left([centering]);
  const precision = cfg.precision ?? 'fp32';
  // fp16: every rank scales its loss share by the same state; the apply graph unscales the sum and decides alike on
  // every rank (an overflow on one rank is an Inf in the sum everywhere).
  const lossScaling = usesLossScaling(precision) ? { ...GRAD_SCALER_DEFAULTS, ...cfg.lossScaling } : undefined;
  const terms = activeTerms(cfg);
  for (const { term } of terms) {
    const why = term.split ? term.split.refusal?.(cfg) : (term.unsplittable ?? 'it has no data-parallel form');
    if (why) return refuse(`the ${term.name} loss term cannot run data-parallel: ${why}`);
  }
  const globalBatch = cfg.batch * ranks;

  const { graph: g, inputs, termInputs } = dinoForward(cfg, target, 'dino_gradient_step', { momentum: false });
  if (ranks > 1 && g.bufferUpdates.size > 0) {
    const buffers = [...g.bufferUpdates.keys()];
    return refuse(
      `batch normalisation (${buffers.slice(0, 3).join(', ')}${buffers.length > 3 ? ', ...' : ''}) normalises by each rank's own images, so ${ranks} ranks would not train as one process ` +
        '(PyTorch DINO uses SyncBatchNorm): use a ViT backbone and head.useBn false, or train in one process',
    );
  }
  const shares = terms.map(({ term, weight }) => ({ term, weight, share: g.within(`${term.name}_loss`, () => term.split!.share(termInputs, globalBatch)) }));
  const loss = shares.map(({ share, weight }) => (weight === 1 ? share.value : mul(share.value, weight))).reduce((sum, t) => add(sum, t));
  const sums = new Map(shares.flatMap(({ share }) => [...share.sums]));
  const layout = addGradientOutputs(g, { loss, sums, select: (name, spec) => name.startsWith(STUDENT) && spec.kind === 'param' && spec.trainable, ...(lossScaling ? { lossScaling } : {}) });
  if (E.isLeft(layout)) return layout;

  const applied = buildApplyGraph(layout.right, {
    optimizer: { kind: 'adamw' },
    ...(cfg.clipGrad > 0 ? { clipGrad: cfg.clipGrad } : {}),
    gateOf: (_, spec) => (spec.tags.includes(LAST_LAYER_TAG) ? LAST_LAYER_TAG : undefined),
    name: 'dino_apply_step',
    ...(lossScaling ? { lossScaling } : {}),
  });
  if (E.isLeft(applied)) return applied;
  const a = applied.right.graph;
  const momentum = a.input('momentum', 'float32', []);
  // State the apply graph reads beyond the trained parameters (teacher, center): the gradient graph's spec and name.
  const state = (name: string): Tensor => {
    const t = g.params.get(name);
    if (!t) throw new Error(`the DINO gradient graph has no state "${name}"`);
    const spec = specOf(t);
    return a.param(spec, name.slice(0, name.length - spec.name.length));
  };

  const scalarsOf = (graph: Graph, skip: (name: string) => boolean) => graph.inputs.map((t) => t.name).filter((n) => !skip(n)).sort().join(', ');
  const gradientScalars = scalarsOf(g, (n) => n in inputs), applyScalars = scalarsOf(a, (n) => n === PACKED);
  if (gradientScalars !== [...GRADIENT_SCALARS].sort().join(', ') || applyScalars !== [...APPLY_SCALARS].sort().join(', ')) {
    // A programming error, not a config error: the lists above and the graphs disagree.
    return refuse(`scalar inputs disagree with the lists: gradient graph ${gradientScalars} (GRADIENT_SCALARS ${GRADIENT_SCALARS.join(', ')}), apply graph ${applyScalars} (APPLY_SCALARS ${APPLY_SCALARS.join(', ')})`);
  }

  // Teacher EMA from the updated student, as the one-graph step (DINO updates the teacher after optimizer.step()).
  // A step skipped by the loss scaler keeps the teacher and the center as well, as the one-graph step does.
  const scaling = applied.right.lossScaling;
  const keep = (next: Tensor, previous: Tensor) => (scaling ? scaling.keep(next, previous) : next);
  a.within('teacher_ema', () => {
    for (const [name, next] of applied.right.updated) {
      const teacherName = TEACHER + name.slice(STUDENT.length);
      if (!g.params.has(teacherName)) continue; // a student-only parameter (none in DINO)
      const t = state(teacherName);
      a.output(NEXT + teacherName, keep(ema(t, next, momentum), t));
    }
  });
  const finished = shares.map(({ term }) => a.within(`${term.name}_loss`, () => term.split!.finish(applied.right.sums, state, cfg)));
  for (const { updates } of finished) for (const [name, next] of updates ?? []) a.output(NEXT + name, keep(next, a.params.get(name) ?? state(name)));
  const amp = scaling && { loss_scale: scaling.scale, skipped: scaling.skipped };
  const metrics: Readonly<Record<string, Tensor>> = { ...Object.assign({}, ...finished.map((f) => f.metrics)), grad_norm: applied.right.gradNorm, ...amp };
  for (const name of dinoMetricNames(precision, cfg)) {
    const t = metrics[name];
    if (!t) throw new Error(`buildDinoStepSplit: no tensor for metric ${name}`);
    a.output(METRIC + name, t);
  }
  if (a.errors.length > 0) return E.left(a.errors);
  const valid = E.chain(() => a.validate())(g.validate());
  return E.map(() => ({ gradient: g, apply: a, layout: layout.right, inputs, ranks, globalBatch }))(valid);
}
