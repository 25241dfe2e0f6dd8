/**
 * The one place a DINO step's batch feeds are built (the training loop and the bench both call it): crops as
 * ORT tensors shaped as the graph's inputs, and stochastic-depth masks drawn from the given generator.
 */
import type { Prng } from '../../dsl/index.ts';
import { type DinoStepConfig, type DinoStepInputs, dinoStepInputShapes } from '../../models/dino-step.ts';
import { sampleDropPathMasks } from '../../models/vit.ts';
import { ort } from '../backend.ts';

/** The crops of one step, as the multi-crop loader returns them. */
export interface StepCrops {
  readonly globals: Float32Array;
  readonly locals: Float32Array;
}

/** A data-parallel rank's share of each global batch: images [rank · B/ranks, (rank + 1) · B/ranks) of every view. */
export interface RankSlice {
  readonly rank: number;
  readonly ranks: number;
}

/**
 * Feeds for the batch inputs of the step `cfg` builds. The masks (globals first, then locals) are drawn from
 * `dropPath` only when the step has them, so a generator shared across steps advances as the loop expects.
 *
 * With `slice`, `cfg` is the global batch's step and `crops` hold the rank's slice of it (runtime/data/loader.ts
 * `LoaderOptions.slice`); the masks are drawn for the whole global batch, as one process draws them, and the rank's
 * columns kept, so that N ranks drop the same paths of the same images as one process does.
 */
export function dinoStepFeeds(cfg: DinoStepConfig, crops: StepCrops, dropPath: () => Prng, slice?: RankSlice): DinoStepInputs<ort.Tensor> {
  if (slice !== undefined && cfg.batch % slice.ranks !== 0) throw new Error(`the global batch of ${cfg.batch} images does not split into ${slice.ranks} equal rank slices`);
  const rankBatch = slice !== undefined ? cfg.batch / slice.ranks : cfg.batch;
  const shapes = dinoStepInputShapes(slice !== undefined ? { ...cfg, batch: rankBatch } : cfg);
  const tensor = (name: string, data: Float32Array, dims: readonly number[]) => {
    const want = dims.reduce((a, d) => a * d, 1);
    if (data.length !== want) throw new Error(`step input "${name}" has ${data.length} values, the step needs [${dims.join(', ')}] = ${want}`);
    return new ort.Tensor('float32', data, [...dims]);
  };
  const feeds: { -readonly [K in keyof DinoStepInputs<ort.Tensor>]: DinoStepInputs<ort.Tensor>[K] } = { globals: tensor('globals', crops.globals, shapes.globals) };
  if (shapes.locals) feeds.locals = tensor('locals', crops.locals, shapes.locals);
  const bb = cfg.backbone;
  const maskGlobals = shapes['drop_path.globals'], maskLocals = shapes['drop_path.locals'];
  if (bb.kind === 'vit' && maskGlobals) {
    const prng = dropPath();
    // Drawn for the whole batch (views · B columns); a rank keeps its own columns [v · B + rank · b, ...) of each view v.
    const masks = (columns: number) => {
      const whole = sampleDropPathMasks(prng, bb, (columns / rankBatch) * cfg.batch);
      return slice === undefined ? whole : sliceColumns(whole, bb.depth * 2, columns / rankBatch, cfg.batch, slice.rank * rankBatch, rankBatch);
    };
    feeds['drop_path.globals'] = tensor('drop_path.globals', masks(maskGlobals[2]!), maskGlobals);
    if (maskLocals) feeds['drop_path.locals'] = tensor('drop_path.locals', masks(maskLocals[2]!), maskLocals);
  }
  return feeds;
}

/** Rows of `views · batch` columns -> rows of `views · count` columns: columns [v · batch + from, v · batch + from + count) of each view v. */
function sliceColumns(data: Float32Array, rows: number, views: number, batch: number, from: number, count: number): Float32Array {
  const out = new Float32Array(rows * views * count);
  for (let r = 0; r < rows; r++) {
    for (let v = 0; v < views; v++) {
      const at = (r * views + v) * batch + from;
      out.set(data.subarray(at, at + count), (r * views + v) * count);
    }
  }
  return out;
}
