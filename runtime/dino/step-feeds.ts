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

/**
 * Feeds for the batch inputs of the step `cfg` builds. The masks (globals first, then locals) are drawn from
 * `dropPath` only when the step has them, so a generator shared across steps advances as the loop expects.
 */
export function dinoStepFeeds(cfg: DinoStepConfig, crops: StepCrops, dropPath: () => Prng): DinoStepInputs<ort.Tensor> {
  const shapes = dinoStepInputShapes(cfg);
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
    feeds['drop_path.globals'] = tensor('drop_path.globals', sampleDropPathMasks(prng, bb, maskGlobals[2]!), maskGlobals);
    if (maskLocals) feeds['drop_path.locals'] = tensor('drop_path.locals', sampleDropPathMasks(prng, bb, maskLocals[2]!), maskLocals);
  }
  return feeds;
}
