/**
 * The command line's wording of the typed errors thrown below it: models/ and runtime/ name library options,
 * the CLI names its flags. Any other error keeps its own message.
 */
import { BadImageError } from '../runtime/data/image-folder.ts';
import { CheckpointError } from '../runtime/dino/checkpoint.ts';
import { ConfigOverrideError } from '../runtime/dino/config.ts';
import { InitWeightsError, NonFiniteLossError, RunFolderError } from '../runtime/dino/train.ts';

export function wordError(e: unknown): string {
  if (e instanceof ConfigOverrideError) return `invalid --set:\n  ${e.problems.join('\n  ')}`;
  if (e instanceof InitWeightsError) {
    const p = e.problem;
    return p.kind === 'unknown' ? `--init: the model has no parameter "${p.name}"` : `--init: "${p.name}" has ${p.got} values, the model needs ${p.need}`;
  }
  if (e instanceof RunFolderError) {
    const p = e.problem;
    return p.kind === 'exists'
      ? `${p.checkpoint} exists: pass --resume to continue that run, or choose another --out folder (nothing was overwritten)`
      : `${p.checkpoint}: the checkpoint was trained with a different config; resume with the run's own config (${p.config}) or start a new --out folder`;
  }
  if (e instanceof NonFiniteLossError) {
    return new NonFiniteLossError(e.step, e.loss, e.checkpoint, 'Lower --set lr=..., raise --set clipGrad or --set freezeLastLayerSteps, or check the data.').message;
  }
  if (e instanceof CheckpointError) {
    const p = e.problem;
    return p.kind === 'missing'
      ? `${p.path}: no checkpoint there; train first (npx dino train --out DIR), or pass the run folder that holds checkpoint.safetensors`
      : `${p.path}: not a dino-ts training checkpoint (format "${p.format ?? 'missing'}"); to start from plain weights use --init FILE`;
  }
  if (e instanceof BadImageError) return `cannot load image ${e.file}: ${e.reason}. Fix or remove the file, or pass --skip-bad-images to skip unreadable files`;
  return e instanceof Error ? e.message : String(e);
}
