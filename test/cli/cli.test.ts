/**
 * The command line: typed errors from below worded with the flag names, flag -> config parsing, and the entry
 * dispatching to cli/ (help and a bad flag, run as a process).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { wordError } from '../../cli/errors.ts';
import { newRunFromArgs, readInitWeights, trainCommand } from '../../cli/train.ts';
import { type OptionSpec, UsageError } from '../../cli/args.ts';
import { DataFitError } from '../../runtime/dino/data-fit.ts';
import { encodeSafetensors } from '../../runtime/io/safetensors.ts';
import { CheckpointError, loadCheckpoint } from '../../runtime/dino/checkpoint.ts';
import { CONFIG_SCHEMA, ConfigOverrideError, dinoFlagKeys } from '../../runtime/dino/config.ts';
import { getPreset } from '../../runtime/dino/presets.ts';
import type { ViTConfig } from '../../models/vit.ts';
import { InitWeightsError, initialState } from '../../runtime/dino/train.ts';
import { RunFolderError } from '../../runtime/dino/run-folder.ts';

const errorOf = (f: () => unknown): unknown => {
  try { f(); } catch (e) { return e; }
  return assert.unreachable('should throw');
};
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dino-cli-'));
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('config overrides: typed problems below, worded as --set by the CLI', async () => {
  const e = await newRunFromArgs(['--set', 'nope=1', '--set', 'lr=abc']).catch((x: unknown) => x);
  assert.instance(e, ConfigOverrideError);
  assert.equal((e as ConfigOverrideError).problems, ['unknown config key "nope"', '"lr": cannot parse "abc" as number']);
  assert.not.match((e as Error).message, /--/);
  assert.is(wordError(e), 'invalid --set:\n  unknown config key "nope"\n  "lr": cannot parse "abc" as number');
  const steps = await newRunFromArgs(['--steps', 'x']).catch((x: unknown) => x);
  assert.instance(steps, UsageError);
  assert.is((steps as Error).message, '--steps must be an integer >= 1, got "x"');
});

test('initial weights that do not fit: typed below, worded as --init by the CLI', () => {
  const specs = [{ name: 'student.backbone.w', shape: [2], dtype: 'float32', init: { kind: 'zeros' }, decay: false, trainable: true, tags: [], kind: 'param' }] as never;
  const unknown = errorOf(() => initialState(specs, 0, new Map([['backbone.v', new Float32Array(2)]])));
  assert.instance(unknown, InitWeightsError);
  assert.is(wordError(unknown), '--init: the model has no parameter "backbone.v"');
  const size = errorOf(() => initialState(specs, 0, new Map([['backbone.w', new Float32Array(3)]])));
  assert.is(wordError(size), '--init: "backbone.w" has 3 values, the model needs 2');
});

test('checkpoints: a missing file and plain weights, worded with the commands and flags', () => {
  const missing = errorOf(() => loadCheckpoint(path.join(dir, 'none.safetensors')));
  assert.instance(missing, CheckpointError);
  assert.match(wordError(missing), /none\.safetensors: no checkpoint there; train first \(npx dino train --out DIR\)/);
  const plain = path.join(dir, 'plain.safetensors');
  fs.writeFileSync(plain, encodeSafetensors(new Map([['w', { dtype: 'float32', shape: [1], data: Float32Array.of(1) }]])));
  assert.match(wordError(errorOf(() => loadCheckpoint(plain))), /not a dino-ts training checkpoint \(format "missing"\); to start from plain weights use --init FILE/);
  const mismatch = new RunFolderError({ kind: 'config-mismatch', checkpoint: 'runs/a/checkpoint.safetensors', config: 'runs/a/config.json', changed: [{ key: 'backbone.depth', was: 6, now: 4 }] });
  assert.not.match(mismatch.message, /--/);
  assert.match(wordError(mismatch), /another config \(backbone\.depth: 6 -> 4\); resume with the run's own config \(dino train --resume runs\/a\) or start a new --out folder/);
});

test('--init reads every weights format through the one reader, prefixed as the step names them', () => {
  const file = path.join(dir, 'ddp.safetensors');
  const t = { dtype: 'float32' as const, shape: [1], data: Float32Array.of(1) };
  fs.writeFileSync(file, encodeSafetensors(new Map([['module.backbone.cls_token', t], ['module.head.mlp.0.bias', t], ['pos_embed', t]])));
  assert.equal([...readInitWeights(file).keys()].sort(), ['backbone.cls_token', 'backbone.pos_embed', 'head.mlp.0.bias']);
  assert.is(getPreset('fmnist-quick').preset, 'fmnist-quick');
});

test('DINO flag names: --arch/--patch-size/--image-size/--local-crops-number become a preset and --set overrides', async () => {
  const { config: c } = await newRunFromArgs(['--arch', 'vit_small', '--patch-size', '8', '--local-crops-number', '10', '--steps', '5']);
  assert.equal([c.preset, (c.backbone as ViTConfig).patchSize, c.backbone.imgSize, c.augment.localCrops, c.augment.localSize], ['vit_small_p8', 8, 224, 10, 96]);
  const { config: d } = await newRunFromArgs(['--arch', 'vit_tiny', '--image-size', '160', '--set', 'batch=8', '--steps', '5']);
  assert.equal([d.preset, d.backbone.imgSize, d.augment.globalSize, d.augment.localSize, d.batch], ['vit_tiny_160px', 160, 160, 64, 8]);
  const usage = async (argv: string[]) => {
    const e = await newRunFromArgs(argv).catch((x: unknown) => x);
    assert.instance(e, UsageError, argv.join(' '));
    return (e as Error).message;
  };
  assert.match(await usage(['--arch', 'vit_huge']), '--arch must be one of vit_tiny, vit_small, vit_base, resnet50, resnet18, got "vit_huge"');
  assert.match(await usage(['--arch', 'vit_small', '--preset', 'fmnist-quick']), 'give one');
  assert.match(await usage(['--arch', 'vit_small', '--patch-size', '15']), '--patch-size 15 must divide --image-size 224');
  assert.match(await usage(['--preset', 'fmnist-quick', '--patch-size', '8']), '--arch');
  assert.match(await usage(['--steps', '5', '--epochs', '2']), 'give one');
  // main_dino.py's hyper-parameter flags, with its underscores too
  const { config: h } = await newRunFromArgs(['--arch', 'vit_small', '--steps', '5', '--lr', '0.001', '--momentum_teacher', '0.9995', '--out_dim', '1024',
    '--teacher-temp', '0.07', '--norm_last_layer', 'false', '--batch_size_per_gpu', '32', '--local_crops_number', '6', '--clip-grad', '0.3']);
  assert.equal([h.lr, h.momentumTeacher, h.head.outDim, h.teacherTemp, h.head.normLastLayer, h.batch, h.augment.localCrops, h.clipGrad], [0.001, 0.9995, 1024, 0.07, false, 32, 6, 0.3]);
  assert.match(await usage(['--steps', '5', '--warmup-epochs', '5']), '--warmup-epochs counts epochs: give the length with --epochs N');
  assert.match(await usage(['--batch', '8', '--batch-size-per-gpu', '16']), '--batch and --batch-size-per-gpu are the same option');
  assert.match(await usage(['--teacher-temp', '0']), '--teacher-temp must be a number > 0');
});

test('the main_dino.py flags the config schema names are dino train options, with the schema\'s help and range', async () => {
  const options = trainCommand.spec.options as Readonly<Record<string, OptionSpec>>;
  for (const { flag, spec } of dinoFlagKeys()) assert.ok(options[flag], `--${flag} (${spec.help})`);
  const option = options['momentum-teacher']!;
  assert.equal([option.help, 'max' in option && option.max], [CONFIG_SCHEMA.momentumTeacher.help, 1]);
  const { config } = await newRunFromArgs(['--steps', '5', '--use_bn_in_head', 'true', '--drop_path_rate', '0.2', '--min_lr', '0',
    '--global_crops_scale', '0.14', '1', '--local_crops_scale', '0.05,0.14', '--optimizer', 'adamw']);
  assert.equal([config.head.useBn, (config.backbone as ViTConfig).dropPathRate, config.minLr, config.augment.globalScale, config.augment.localScale], [true, 0.2, 0, [0.14, 1], [0.05, 0.14]]);
  const usage = async (argv: string[]) => ((await newRunFromArgs(argv).catch((e: unknown) => e)) as Error).message;
  assert.is(await usage(['--global-crops-scale', '0.4']), '--global-crops-scale must be 2 numbers (e.g. 0.4 1), got "0.4"');
  assert.match(await usage(['--global-crops-scale', '0.4', '1', '2']), '"2" is not an option of dino train');
  assert.match(await usage(['--local-crops-scale', '0.5', '0.1']), /localScale must be \[lo, hi\] with 0 < lo <= hi <= 1/);
});

test('data that does not fit the preset: typed below, worded with the flags by the CLI', () => {
  const e = new DataFitError({ kind: 'needs-folder', preset: 'vit_small', need: 3, size: 224 });
  assert.not.match(e.message, /--/);
  assert.match(wordError(e), /without --data it would train on Fashion-MNIST.*--data FOLDER.*--preset fmnist-quick/);
  const c = new DataFitError({ kind: 'colour-folder', preset: 'fmnist-quick', folder: 'imgs', example: 'imgs/a.png' });
  assert.match(wordError(c), /imgs holds colour images \(e\.g\. imgs\/a\.png\).*--arch vit_small --patch-size 16/);
});

test('bin/dino.ts dispatches to cli/ and words errors with the flag', async () => {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
  const run = (...args: string[]) => promisify(execFile)(process.execPath, ['--import', 'tsx', path.join(root, 'bin/dino.ts'), ...args], { cwd: root }).catch((e: { stdout: string; stderr: string; code: number }) => e);
  const help = await run('train', '--help');
  assert.match(help.stdout, /^usage: dino train \[options\]/);
  const bad = await run('train', '--recompute', 'gelu');
  assert.match(bad.stderr, /error: --recompute must be one of none, mlp, blocks, got "gelu"/);
  assert.is((bad as { code?: number }).code, 2);
});

test.run();
