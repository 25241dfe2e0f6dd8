/**
 * DINO's own flag names on `dino train` (main_dino.py's `--arch`, `--patch_size`, `--local_crops_number`,
 * `--epochs`, written with dashes), turned into what the rest of the CLI already understands: a preset name and
 * `--set` overrides, so one path checks types and names (runtime/dino/cli-config.ts). `--epochs` needs the data
 * set's size, so it is applied after the data is loaded ({@link applyEpochs}).
 */
import type { Dataset } from '../data/dataset.ts';
import type { TrainConfig } from './config.ts';
import { checkDataFits } from './data-fit.ts';
import { dinoVitConfig, parseArch, withEpochs } from './vit-presets.ts';
import { loadTrainingData } from './train.ts';

export interface DinoFlags {
  preset?: string | undefined;
  arch?: string | undefined;
  'patch-size'?: string | undefined;
  'image-size'?: string | undefined;
  'local-crops-number'?: string | undefined;
  set?: string[] | undefined;
}

function positiveInt(flag: string, v: string): number {
  const n = Number(v);
  if (!(Number.isInteger(n) && n > 0)) throw new Error(`${flag} must be a positive integer, got "${v}"`);
  return n;
}

/**
 * The preset and `--set` list these flags mean. `--arch` picks a DINO ViT (and cannot be combined with
 * `--preset`); `--patch-size` / `--image-size` then rebuild it as DINO would (local crop size kept at 96/224 of
 * the image, in whole patches); `--local-crops-number` is DINO's name for `--local-crops`. Later `--set`s win.
 */
export function dinoFlagsToSets(flags: DinoFlags): { preset: string | undefined; set: string[] } {
  const extra: string[] = [];
  let preset = flags.preset;
  if (flags.arch !== undefined) {
    if (flags.preset !== undefined) throw new Error(`--arch ${flags.arch} and --preset ${flags.preset} both choose the model: give one`);
    const arch = parseArch(flags.arch);
    const patchSize = flags['patch-size'] !== undefined ? positiveInt('--patch-size', flags['patch-size']) : 16;
    const imageSize = flags['image-size'] !== undefined ? positiveInt('--image-size', flags['image-size']) : 224;
    const cfg = dinoVitConfig(arch, { patchSize, imageSize });
    preset = arch;
    extra.push(
      `preset="${cfg.preset}${imageSize === 224 ? '' : `_${imageSize}px`}"`,
      `backbone.patchSize=${patchSize}`, `backbone.imgSize=${imageSize}`,
      `augment.globalSize=${imageSize}`, `augment.localSize=${cfg.augment.localSize}`,
    );
  } else {
    if (flags['patch-size'] !== undefined) throw new Error('--patch-size applies to --arch vit_tiny|vit_small|vit_base; for a preset use --set backbone.patchSize=N');
    if (flags['image-size'] !== undefined) {
      const s = positiveInt('--image-size', flags['image-size']);
      extra.push(`backbone.imgSize=${s}`, `augment.globalSize=${s}`);
    }
  }
  if (flags['local-crops-number'] !== undefined) extra.push(`augment.localCrops=${flags['local-crops-number']}`);
  return { preset, set: [...extra, ...(flags.set ?? [])] };
}

/**
 * `cfg` with its length given in epochs of the training data (vit-presets.ts `withEpochs`), and the data,
 * loaded once here so training does not load it again. Refuses data that does not fit first.
 */
export async function applyEpochs(
  cfg: TrainConfig,
  epochs: string,
  opts: { data?: string | undefined; skipBadImages?: boolean; log?: (line: string) => void },
): Promise<{ config: TrainConfig; dataset: Dataset }> {
  const n = positiveInt('--epochs', epochs);
  await checkDataFits(cfg, opts.data);
  const dataset = await loadTrainingData(cfg, { ...(opts.data ? { data: opts.data } : {}), skipBadImages: opts.skipBadImages ?? false, ...(opts.log ? { log: opts.log } : {}) });
  return { config: withEpochs(cfg, n, dataset.train.count), dataset };
}
