/** The config schema and what is derived from it; checkTrainConfig: what a config file (a run's config.json, a checkpoint's metadata) must hold before anything builds on it. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readCheckpointMeta } from '../../../runtime/dino/checkpoint.ts';
import { writeSafetensorsAtomic } from '../../../runtime/io/safetensors.ts';
import { CONFIG_SCHEMA, ConfigFileError, ConfigOverrideError, RESUMABLE_KEYS, applyOverrides, checkTrainConfig, withPrecision, withValues } from '../../../runtime/dino/config.ts';
import { getPreset, presetNames } from '../../../runtime/dino/presets.ts';

const roundTrip = (v: unknown): unknown => JSON.parse(JSON.stringify(v));

test('every preset, and presets with each optional key set, pass as written to config.json', () => {
  for (const name of presetNames()) checkTrainConfig(roundTrip(getPreset(name)), name);
  const quick = getPreset('fmnist-quick');
  const extended = applyOverrides(quick, ['koleoWeight=0.1', 'centering=sinkhorn', 'backbone.convStem=[8,8]']);
  checkTrainConfig(roundTrip({ ...withPrecision(extended, 'bf16'), data: '/data/images', epochs: 3 }), 'extended');
  checkTrainConfig(roundTrip({ ...quick, data: { kind: 'folder', path: '/data/pets' } }), 'an older run\'s data record');
});

test('a hand-edited config is refused with every problem, naming the file', () => {
  const quick = roundTrip(getPreset('fmnist-quick')) as Record<string, any>;
  quick['lR'] = 0.1; // a typo
  quick['batch'] = '32';
  quick['centering'] = 'mean';
  quick['precision'] = 'fp8';
  quick['backbone']['convStem'] = ['16'];
  delete quick['head']['outDim'];
  try {
    checkTrainConfig(quick, 'runs/x/config.json');
    assert.unreachable('accepted');
  } catch (e) {
    assert.instance(e, ConfigFileError);
    const message = (e as Error).message;
    for (const part of ['runs/x/config.json', 'unknown key "lR"', '"batch" must be number, got string', '"centering" must be one of center, sinkhorn',
      '"precision" must be one of fp32, fp16, bf16', '"backbone.convStem" must be array of number', '"head.outDim" is missing']) {
      assert.ok(message.includes(part), `${part} in:\n${message}`);
    }
  }
  assert.throws(() => checkTrainConfig([], 'a.json'), /the config must be an object/);
  const badAugment = roundTrip(getPreset('fmnist-quick')) as Record<string, any>;
  badAugment['augment']['flipP'] = 2;
  assert.throws(() => checkTrainConfig(badAugment, 'b.json'), /augment: .*flipP/s);
});

test('a checkpoint whose config metadata is not a config: refused on read, naming the checkpoint', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dino-config-'));
  const file = path.join(dir, 'checkpoint.safetensors');
  const { steps: _, ...noSteps } = getPreset('fmnist-quick');
  const x = { dtype: 'float32' as const, shape: [1], data: new Float32Array(1) };
  writeSafetensorsAtomic(file, new Map([['x', x]]), { format: 'dino-ts/1', config: JSON.stringify(noSteps), step: '1', seed: '0', loader: '{}' });
  assert.throws(() => readCheckpointMeta(file), (e: Error) => e instanceof ConfigFileError && e.message.includes(file) && e.message.includes('"steps" is missing'));
  fs.rmSync(dir, { recursive: true });
});

test('the schema: every key of every preset has a row; optional keys are absent from the presets', () => {
  const leaves = (v: unknown, prefix = ''): string[] => v && typeof v === 'object' && !Array.isArray(v)
    ? Object.entries(v).flatMap(([k, x]) => leaves(x, `${prefix}${k}.`)) : [prefix.slice(0, -1)];
  for (const name of presetNames()) {
    for (const key of leaves(getPreset(name))) assert.ok(key in CONFIG_SCHEMA, `${name}: ${key} has no schema row`);
  }
  for (const [key, spec] of Object.entries(CONFIG_SCHEMA)) {
    if ('absent' in spec) assert.not.ok(leaves(getPreset('fmnist-tiny6')).includes(key), `${key} in fmnist-tiny6: configs from before it would change`);
  }
  assert.equal([...RESUMABLE_KEYS].sort(), ['epochs', 'steps', 'warmupFraction']);
});

test('typed values and key=value overrides go through the same checks', () => {
  const quick = getPreset('fmnist-quick');
  const typed = withValues(quick, { lr: 0.001, 'head.outDim': 512, 'head.useBn': true, centering: 'sinkhorn' });
  assert.equal(typed, applyOverrides(quick, ['lr=0.001', 'head.outDim=512', 'head.useBn=true', 'centering=sinkhorn']));
  assert.is(typed.head.useBn, true);
  assert.not.ok('koleoWeight' in withValues(quick, { koleoWeight: 0 }), 'an optional key at its absent value is removed');
  try {
    withValues(quick, [['batch', 1.5], ['head.useBn', 'yes'], ['nope', 1], ['epochs', 3], ['augment.augment', 'all']]);
    assert.unreachable('accepted');
  } catch (e) {
    assert.instance(e, ConfigOverrideError);
    assert.equal((e as ConfigOverrideError).problems, [
      '"batch" must be an integer, got 1.5', '"head.useBn" must be boolean, got string ("yes")', 'unknown config key "nope"',
      '"epochs" has its own option (epochs), not an override', '"augment.augment" must be one of dino, none, got "all"',
    ]);
  }
  assert.throws(() => applyOverrides(quick, ['lr']), /"lr" is not key=value/);
  assert.throws(() => applyOverrides(quick, ['backbone.convStem=[8,']), /"backbone.convStem": cannot parse "\[8," as array of number/);
  assert.is(applyOverrides(quick, ['preset="my run"']).preset, 'my run', 'a JSON string is unquoted');
});

test.run();
