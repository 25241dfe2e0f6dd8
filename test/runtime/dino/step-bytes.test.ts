/**
 * The presets and the step graphs they compile to, pinned: moving the config code (schema, presets, overrides)
 * must leave every preset's values and the ONNX bytes of the training step exactly as they were. The hashes were
 * taken at commit d917622; a deliberate change to a preset or to the step graph updates them, saying why.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import * as E from 'fp-ts/lib/Either.js';
import { emitOnnx } from '../../../dsl/index.ts';
import { buildDinoStep } from '../../../models/dino-step.ts';
import { type TrainConfig, applyOverrides, stepConfig, withPrecision } from '../../../runtime/dino/config.ts';
import { getPreset, presetNames } from '../../../runtime/dino/presets.ts';

const sha = (bytes: Uint8Array | string) => createHash('sha256').update(bytes).digest('hex').slice(0, 16);

/** JSON with sorted keys: the values of a config, whatever order its keys were spread in. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(',')}}`;
  return JSON.stringify(v);
}

const PRESET_HASHES: Record<string, string> = {
  'fmnist-quick': '75f8761ec1fedb91',
  'fmnist-long': 'e4aff7a775937461',
  'fmnist-tiny6': '7ec3eebb3c761299',
  'fmnist-tiny12': '753dbf31503e0b67',
  'vit_tiny': 'eec66c094dd96cc6',
  'vit_tiny_p8': 'fda9ab8291727318',
  'vit_small': '646f6d67110876fe',
  'vit_small_p8': '7d661cc0cbb79bbd',
  'vit_base': '8fefdbc585e59374',
  'vit_base_p8': '9f0e9c283e733501',
};

test('every preset holds the values it held before the move', () => {
  const got = Object.fromEntries(presetNames().map((name) => [name, sha(canonical(getPreset(name)))]));
  assert.equal(got, PRESET_HASHES);
});

function stepBytes(cfg: TrainConfig): Uint8Array {
  const built = buildDinoStep({ ...stepConfig(cfg), recompute: 'mlp' });
  if (E.isLeft(built)) throw new Error('the step does not build');
  const bytes = emitOnnx(built.right.graph, { params: 'inputs' });
  if (E.isLeft(bytes)) throw new Error('the step does not emit');
  return bytes.right;
}

test('the training step of fmnist-quick, fmnist-tiny6 and an overridden config emits the same ONNX bytes', () => {
  const overridden = withPrecision(applyOverrides(getPreset('fmnist-quick'), ['centering=sinkhorn', 'koleoWeight=0', 'backbone.convStem=[8]']), 'fp16');
  assert.is(sha(stepBytes(getPreset('fmnist-quick'))), 'a1867f21f29f8907');
  assert.is(sha(stepBytes(getPreset('fmnist-tiny6'))), 'd94c7c5c6ce51e9b');
  assert.is(sha(stepBytes(overridden)), '00a2c6a8c03e2909');
});

test.run();
