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
import { readInitWeights, resolveTrainConfig } from '../../cli/train.ts';
import { encodeSafetensors } from '../../runtime/io/safetensors.ts';
import { CheckpointError, loadCheckpoint } from '../../runtime/dino/checkpoint.ts';
import { ConfigOverrideError, getPreset } from '../../runtime/dino/config.ts';
import { InitWeightsError, RunFolderError, initialState } from '../../runtime/dino/train.ts';

const errorOf = (f: () => unknown): unknown => {
  try { f(); } catch (e) { return e; }
  return assert.unreachable('should throw');
};
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dino-cli-'));
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('config overrides: typed problems below, worded as --set by the CLI', async () => {
  const e = await resolveTrainConfig({ set: ['nope=1', 'lr=abc'] }).catch((x: unknown) => x);
  assert.instance(e, ConfigOverrideError);
  assert.equal((e as ConfigOverrideError).problems, ['unknown config key "nope"', '"lr": cannot parse "abc" as number']);
  assert.not.match((e as Error).message, /--/);
  assert.is(wordError(e), 'invalid --set:\n  unknown config key "nope"\n  "lr": cannot parse "abc" as number');
  const steps = await resolveTrainConfig({ steps: 'x' }).catch((x: unknown) => x);
  assert.match(wordError(steps), /^invalid --set:\n  "steps": cannot parse "x" as number/);
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
  const mismatch = new RunFolderError({ kind: 'config-mismatch', checkpoint: 'c.safetensors', config: 'config.json' });
  assert.match(wordError(mismatch), /resume with the run's own config \(config\.json\) or start a new --out folder/);
});

test('--init reads every weights format through the one reader, prefixed as the step names them', () => {
  const file = path.join(dir, 'ddp.safetensors');
  const t = { dtype: 'float32' as const, shape: [1], data: Float32Array.of(1) };
  fs.writeFileSync(file, encodeSafetensors(new Map([['module.backbone.cls_token', t], ['module.head.mlp.0.bias', t], ['pos_embed', t]])));
  assert.equal([...readInitWeights(file).keys()].sort(), ['backbone.cls_token', 'backbone.pos_embed', 'head.mlp.0.bias']);
  assert.is(getPreset('fmnist-quick').preset, 'fmnist-quick');
});

test('bin/dino.ts dispatches to cli/ and words errors with the flag', async () => {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
  const run = (...args: string[]) => promisify(execFile)(process.execPath, ['--import', 'tsx', path.join(root, 'bin/dino.ts'), ...args], { cwd: root }).catch((e: { stdout: string; stderr: string; code: number }) => e);
  const help = await run('train', '--help');
  assert.match(help.stdout, /^usage: dino train \[options\]/);
  const bad = await run('train', '--recompute', 'gelu');
  assert.match(bad.stderr, /error: --recompute must be one of none, mlp, blocks, got "gelu"/);
  assert.is((bad as { code?: number }).code, 1);
});

test.run();
