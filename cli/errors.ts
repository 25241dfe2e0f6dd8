/**
 * The command line's wording of the typed errors thrown below it: models/ and runtime/ name library options,
 * the CLI names its flags. Any other error keeps its own message.
 */
import { BadImageError } from '../runtime/data/image-folder.ts';
import { CheckpointError } from '../runtime/dino/checkpoint.ts';
import { ConfigOverrideError, formatConfigChange } from '../runtime/dino/config.ts';
import { fashionMnistPresetNames } from '../runtime/dino/presets.ts';
import { InitWeightsError, NonFiniteLossError } from '../runtime/dino/train.ts';
import { RunFolderError } from '../runtime/dino/run-folder.ts';
import { DataFitError } from '../runtime/dino/data-fit.ts';
import { EvalDataError, EvalOptionError } from '../exports/evaluation/eval-data.ts';
import { dirname } from 'node:path';

export function wordError(e: unknown): string {
  if (e instanceof ConfigOverrideError) return `invalid --set:\n  ${e.problems.join('\n  ')}`;
  if (e instanceof InitWeightsError) {
    const p = e.problem;
    return p.kind === 'unknown' ? `--init: the model has no parameter "${p.name}"` : `--init: "${p.name}" has ${p.got} values, the model needs ${p.need}`;
  }
  if (e instanceof RunFolderError) {
    const p = e.problem;
    if (p.kind === 'exists') return `${p.checkpoint} exists: continue that run with dino train --resume ${dirname(p.checkpoint)}, or choose another --out folder (nothing was overwritten)`;
    if (p.kind === 'too-short') return `${p.checkpoint} has done ${p.done} steps already: a resumed run can only grow (--steps > ${p.done}, got ${p.steps})`;
    return `${p.checkpoint}: the checkpoint was trained with another config (${p.changed.map(formatConfigChange).join('; ')}); resume with the run's own config (dino train --resume ${dirname(p.checkpoint)}) or start a new --out folder`;
  }
  if (e instanceof DataFitError) {
    const p = e.problem;
    const rgb = '--arch vit_small --patch-size 16 (or --preset vit_tiny|vit_small|vit_base)';
    const [first, ...others] = fashionMnistPresetNames();
    const gray = `--preset ${first} (or ${others.join(', ')})`;
    if (p.kind === 'channels') return `preset ${p.preset} takes ${p.need}-channel images, but the data set ${p.dataset} has ${p.has} channel(s): use ${p.has === 1 ? gray : rgb}`;
    if (p.kind === 'needs-folder') return `preset ${p.preset} takes ${p.need}-channel ${p.size} px images, but without --data it would train on Fashion-MNIST (1 channel, 28 px): pass --data FOLDER with your images, or use ${gray} for Fashion-MNIST`;
    return `${p.folder} holds colour images (e.g. ${p.example}), but preset ${p.preset} takes 1-channel 28 px images (Fashion-MNIST's): train on RGB with ${rgb}`;
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
  if (e instanceof EvalOptionError) {
    const flag = { ks: '--nb-knn', temperature: '--temperature', nLastBlocks: '--n-last-blocks', avgpoolPatchtokens: '--avgpool-patchtokens', val: '--val' }[e.option] ?? e.option;
    return `${flag} must be ${e.requirement}, got ${JSON.stringify(e.value)}`;
  }
  if (e instanceof EvalDataError) {
    const p = e.problem;
    switch (p.kind) {
      case 'missing':
        return p.run
          ? `${p.folder} not found: run ${p.run} was trained on it (its config.json records it as the ${p.role === 'val' ? 'validation folder' : 'data folder'}); restore it there, or pass the images to evaluate with ${p.role === 'val' ? '--val FOLDER' : '--data FOLDER'}`
          : `${p.role === 'val' ? 'validation' : 'image'} folder ${p.folder} not found: check the path`;
      case 'no-held-out':
        return `${p.folder} has no held-out images (a class needs at least 10 images for every 10th to be held out, or the folder train/ and test/ sub-folders): pass --val FOLDER`;
      case 'no-split':
        return `run ${p.run} trained on every image of ${p.folder}, so none is held out for evaluation: pass --val FOLDER, lay the data out as FOLDER/train + FOLDER/val, or train with --holdout F (e.g. 0.1)`;
      case 'channels':
        return p.run
          ? `run ${p.run} records no data folder in its config.json and its model takes ${p.channels}-channel images, so the Fashion-MNIST default cannot apply: pass the image folder it was trained on with --data FOLDER`
          : `the model takes ${p.channels}-channel images and Fashion-MNIST is grayscale: pass an image folder with --data FOLDER`;
      case 'record':
        return e.message;
    }
  }
  if (e instanceof BadImageError) return `cannot load image ${e.file}: ${e.reason}. Fix or remove the file, or pass --skip-bad-images to skip unreadable files`;
  return e instanceof Error ? e.message : String(e);
}
