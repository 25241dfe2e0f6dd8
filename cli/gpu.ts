/**
 * The CLI side of the GPU and real-image work: `dino setup cuda`, `dino doctor`, and the DINO flags of
 * `dino train` (--arch, --patch-size, --image-size, --local-crops-number, --epochs) with the CUDA default for
 * --steps-per-run. Kept apart from bin/dino.ts so the command table only dispatches here.
 */
import { parseArgs } from 'node:util';
import type { ExecutionProvider } from '../runtime/backend.ts';
import type { TrainConfig } from '../runtime/dino/config.ts';
import type { Dataset } from '../runtime/data/dataset.ts';
import { type DinoFlags, applyEpochs, dinoFlagsToSets } from '../runtime/dino/dino-flags.ts';
import { defaultStepsPerRun } from '../runtime/ep/steps-per-run.ts';

const SETUP_HELP = `usage: dino setup cuda [--dir DIR]

  Installs, from the npm registry only, onnxruntime-node 1.29.0 and the CUDA 13 provider libraries of the same
  ORT release (npm package com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9, ~250 MB) into DIR (default
  .dino/cuda, or $DINO_CUDA_DIR), puts the provider next to libonnxruntime.so.1, checks the versions match, and
  prints the CUDA libraries still needed with the LD_LIBRARY_PATH line. Afterwards --ep cuda uses that build.`;

export async function setupCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { dir: { type: 'string' }, help: { type: 'boolean' } } });
  if (values.help) return void console.log(SETUP_HELP);
  if (positionals.length !== 1 || positionals[0] !== 'cuda') throw new Error(`dino setup takes one target, "cuda"; got "${positionals.join(' ')}"\n\n${SETUP_HELP}`);
  const { setupCuda } = await import('../runtime/ep/cuda-setup.ts');
  await setupCuda({ ...(values.dir ? { dir: values.dir } : {}), log: (l) => console.log(l) });
}

export async function doctorCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { json: { type: 'boolean' }, help: { type: 'boolean' } } });
  if (values.help) return void console.log('usage: dino doctor [--json]\n\n  Opens and runs a one-node model with each execution provider (cpu, cuda, webgpu) and says which start, and why not.');
  const { doctor } = await import('../runtime/ep/doctor.ts');
  const report = await doctor();
  console.log(values.json ? JSON.stringify(report.results) : report.text);
}

/** The preset and --set list that DINO's flag names mean (runtime/dino/dino-flags.ts). */
export function dinoTrainFlags(values: DinoFlags & { 'local-crops'?: string | undefined }): { preset: string | undefined; set: string[] } {
  return dinoFlagsToSets(values);
}

/**
 * After the config is resolved: the length in epochs (`--epochs`, or the 100 epochs an --arch preset carries
 * when no --steps is given) over the loaded data, and the default steps per run for the EP.
 */
export async function dinoTrainSetup(
  config: TrainConfig,
  values: { epochs?: string | undefined; steps?: string | undefined; data?: string | undefined; 'skip-bad-images'?: boolean | undefined; 'steps-per-run'?: string | undefined; 'checkpoint-every'?: string | undefined },
  ep: ExecutionProvider,
  log: (line: string) => void,
): Promise<{ config: TrainConfig; dataset?: Dataset; stepsPerRun?: number }> {
  if (values.epochs !== undefined && values.steps !== undefined) throw new Error('--epochs and --steps both set the length of the run: give one');
  const epochs = values.epochs ?? (values.steps === undefined && config.epochs !== undefined ? String(config.epochs) : undefined);
  let out: { config: TrainConfig; dataset?: Dataset } = { config };
  if (epochs !== undefined) {
    out = await applyEpochs(config, epochs, { data: values.data, skipBadImages: values['skip-bad-images'] ?? false, log });
    log(`${out.config.epochs} epochs of ${out.dataset!.train.count} images at batch ${config.batch}: ${out.config.steps} steps`);
  }
  const stepsPerRun = values['steps-per-run'] === undefined && ep === 'cuda'
    ? defaultStepsPerRun(ep, [values['checkpoint-every'] !== undefined ? Number(values['checkpoint-every']) : undefined])
    : undefined;
  return { ...out, ...(stepsPerRun !== undefined ? { stepsPerRun } : {}) };
}
