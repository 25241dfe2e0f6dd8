/** Turning `dino train` flags into a resolved TrainConfig (and initial weights), with errors naming the flag. */
import { extname, join } from 'node:path';
import { type TrainConfig, applyOverrides, getPreset } from './config.ts';
import { readSafetensors } from '../io/safetensors.ts';
import { extractStateDict, readPth } from '../io/pth.ts';

export interface TrainFlags {
  preset?: string | undefined;
  steps?: string | undefined;
  batch?: string | undefined;
  seed?: string | undefined;
  out?: string | undefined;
  init?: string | undefined;
  augment?: string | undefined;
  'local-crops'?: string | undefined;
  set?: string[] | undefined;
}

/** Flags become `--set` overrides, so one code path checks types and names. */
export async function resolveTrainConfig(flags: TrainFlags): Promise<{ config: TrainConfig; out: string; initWeights?: Map<string, Float32Array> }> {
  const base = getPreset(flags.preset ?? 'fmnist-quick');
  const sets: string[] = [];
  if (flags.steps) sets.push(`steps=${flags.steps}`);
  if (flags.batch) sets.push(`batch=${flags.batch}`);
  if (flags.seed) sets.push(`seed=${flags.seed}`);
  if (flags.augment) sets.push(`augment.augment="${flags.augment}"`);
  if (flags['local-crops']) sets.push(`augment.localCrops=${flags['local-crops']}`);
  sets.push(...(flags.set ?? []));
  const config = applyOverrides(base, sets);
  const out = flags.out ?? join('runs', `${config.preset}-${config.seed}`);
  if (!flags.init) return { config, out };
  return { config, out, initWeights: readInitWeights(flags.init) };
}

/**
 * Student/teacher start weights from a file: safetensors keyed by DINO names (`backbone.`/`head.` prefixed, or
 * plain backbone keys) or a PyTorch `.pth` (full DINO checkpoint or backbone-only). Keys are returned as the
 * step graph names them without the `student.` prefix: `backbone.<key>` and `head.<key>`.
 */
export function readInitWeights(file: string): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  const put = (prefix: string, tensors: Map<string, { dtype: string; data: unknown }>) => {
    for (const [k, t] of tensors) {
      if (t.dtype !== 'float32') throw new Error(`${file}: "${k}" is ${t.dtype}; initial weights must be float32`);
      out.set(prefix + k, t.data as Float32Array);
    }
  };
  if (extname(file) === '.pth' || extname(file) === '.pt') {
    const sd = extractStateDict(readPth(file), file, { prefer: 'teacher' });
    put('backbone.', sd.backbone as Map<string, { dtype: string; data: unknown }>);
    put('head.', sd.head as Map<string, { dtype: string; data: unknown }>);
    return out;
  }
  const { tensors } = readSafetensors(file);
  for (const [k, t] of tensors) {
    const name = k.startsWith('backbone.') || k.startsWith('head.') ? k : `backbone.${k}`;
    if (t.dtype !== 'float32') throw new Error(`${file}: "${k}" is ${t.dtype}; initial weights must be float32`);
    out.set(name, t.data as Float32Array);
  }
  return out;
}
