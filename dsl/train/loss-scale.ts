/**
 * Dynamic loss scaling in the step graph, as torch.cuda.amp.GradScaler: float16 gradients underflow to zero below
 * 2^-24, so the loss is multiplied by a large scale before differentiation and the gradients are divided by it
 * before anything reads them (clipping, the optimizer). A scale too large overflows a float16 product to Inf; then
 * the whole update is skipped and the scale halves. After `growthInterval` finite steps in a row it doubles.
 *
 * State: `optim.loss_scale` (init 65536) and `optim.growth_tracker` (finite steps since the last change), both
 * float32 scalars that every step updates, skipped or not. The finiteness test is one comparison on the sum of the
 * squared gradient norms that the step computes anyway (the `grad_norm` metric): Inf or NaN anywhere makes it Inf
 * or NaN, and `Less(x, +Inf)` is false for both. Less has a kernel on every execution provider, where IsInf/IsNaN
 * are not assured to. (A false alarm would need a global gradient norm above 1.8e19.)
 */
import type { Graph, Tensor } from '../graph.ts';
import { add, greaterOrEqual, less, mul, reciprocal, where } from '../ops/elementwise.ts';

export interface LossScaling {
  /** Initial scale (GradScaler: 2^16). */
  readonly initScale: number;
  /** Factor after `growthInterval` finite steps in a row (2). */
  readonly growthFactor: number;
  /** Factor after a step with a non-finite gradient (0.5). */
  readonly backoffFactor: number;
  /** Finite steps in a row before the scale grows (2000). */
  readonly growthInterval: number;
}

/** torch.cuda.amp.GradScaler's defaults, which DINO uses (`--use_fp16 true`). */
export const GRAD_SCALER_DEFAULTS: LossScaling = { initScale: 65536, growthFactor: 2, backoffFactor: 0.5, growthInterval: 2000 };

export const LOSS_SCALE = 'optim.loss_scale';
export const GROWTH_TRACKER = 'optim.growth_tracker';

export interface LossScaler {
  readonly cfg: LossScaling;
  /** The scale this step multiplies the loss by (the state's value). */
  readonly scale: Tensor;
  /** Finite steps in a row so far (state). */
  readonly tracker: Tensor;
  /** The loss to differentiate: `loss * scale`. */
  scaleLoss(loss: Tensor): Tensor;
  /** A gradient of the scaled loss, divided by the scale (times its reciprocal, as GradScaler: exact for powers of two). */
  unscale(grad: Tensor): Tensor;
}

export interface LossScalingResult {
  /** The scale this step used. */
  readonly scale: Tensor;
  /** float32 1 when the update was skipped (a gradient was Inf or NaN), else 0. */
  readonly skipped: Tensor;
  /** `next` when the step's gradients were finite, else `previous`: for state a caller updates after the optimizer. */
  keep(next: Tensor, previous: Tensor): Tensor;
}

const scalerState = (graph: Graph, name: string, value: number) =>
  graph.param({ name, shape: [], dtype: 'float32', init: { kind: 'constant', value }, decay: false, trainable: false, tags: [], kind: 'optim' });

/** The scale state alone, for a graph that scales its loss but leaves the update to another (a data-parallel
 * gradient graph, dsl/train/split-step.ts): the same state as {@link lossScaler}'s, so one TrainState feeds both. */
export function lossScaleState(graph: Graph, cfg: LossScaling): Tensor {
  return scalerState(graph, LOSS_SCALE, cfg.initScale);
}

/** Adds the scaler's state to `graph`: call before differentiating the loss. */
export function lossScaler(graph: Graph, cfg: LossScaling): LossScaler {
  const scale = lossScaleState(graph, cfg);
  const tracker = scalerState(graph, GROWTH_TRACKER, 0);
  const inverse = graph.within('loss_scaling', () => reciprocal(scale));
  return {
    cfg,
    scale,
    tracker,
    scaleLoss: (loss) => graph.within('loss_scaling', () => mul(loss, scale)),
    unscale: (grad) => mul(grad, inverse),
  };
}

/**
 * Completes the scaler once the optimizer's outputs exist: every `next.<state>` output emitted so far keeps its old
 * value when `sumSquares` (the sum of the squared unscaled gradient norms) is not finite, and the scaler's own
 * state gets its next value (GradScaler.update). `nextPrefix` is the step's output prefix for new state.
 */
export function finishLossScaling(graph: Graph, scaler: LossScaler, sumSquares: Tensor, nextPrefix: string): LossScalingResult {
  const { cfg, scale, tracker } = scaler;
  return graph.within('loss_scaling', () => {
    const finite = less(sumSquares, Infinity);
    const keep = (next: Tensor, previous: Tensor) => where(finite, next, previous);
    for (const [name, next] of [...graph.outputs]) {
      if (!name.startsWith(nextPrefix)) continue;
      const previous = graph.params.get(name.slice(nextPrefix.length));
      if (!previous) throw new Error(`finishLossScaling: output ${name} has no state input`);
      graph.outputs.set(name, keep(next, previous));
    }
    const successes = add(tracker, 1);
    const grow = greaterOrEqual(successes, cfg.growthInterval);
    const nextScale = where(finite, where(grow, mul(scale, cfg.growthFactor), scale), mul(scale, cfg.backoffFactor));
    const nextTracker = where(finite, where(grow, 0, successes), 0);
    graph.output(nextPrefix + LOSS_SCALE, nextScale);
    graph.output(nextPrefix + GROWTH_TRACKER, nextTracker);
    return { scale, skipped: where(finite, graph.scalar(0), graph.scalar(1)), keep };
  });
}
