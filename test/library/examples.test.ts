/**
 * examples/ run as a user runs them (`node --import tsx`, imports through the package name): a custom backbone
 * trained with DINO and exported; the features of a folder through an exported teacher.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { readBackboneExportInfo, readFeatureFile } from 'dino-ts';
import { makeRun } from '../exports/helpers.ts';
import { runModel } from '../../exports/evaluation/run-model.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dino-examples-'));
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));
const example = (name: string, ...args: string[]) => promisify(execFile)(process.execPath, ['--import', 'tsx', path.join(ROOT, 'examples', name), ...args], { cwd: ROOT });

test('examples/custom-backbone.ts trains a registered backbone with DINO and exports its features model', async () => {
  const out = path.join(dir, 'convnet');
  const { stdout } = await example('custom-backbone.ts', out);
  assert.match(stdout, /trained 5 steps, last loss \d+\.\d{4}/);
  const lines = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n');
  assert.is(lines.length, 5);
  const info = readBackboneExportInfo(path.join(out, 'teacher-features.onnx'))!;
  assert.equal([info.backbone.kind, info.featureDim], ['custom', 32]);
});

test('examples/folder-features.ts writes the features of a folder, rows mapped to files', async () => {
  const folder = path.join(dir, 'images');
  for (const cls of ['ant', 'bee']) {
    fs.mkdirSync(path.join(folder, cls), { recursive: true });
    for (let i = 0; i < 3; i++) {
      const px = Buffer.alloc(32 * 32 * 3).map((_, k) => (k * (i + 2) + cls.length * 40) % 256);
      await sharp(px, { raw: { width: 32, height: 32, channels: 3 } }).png().toFile(path.join(folder, cls, `${i}.png`));
    }
  }
  const model = runModel({ run: makeRun(path.join(dir, 'run')).dir });
  const out = path.join(dir, 'f.npy');
  const { stdout } = await example('folder-features.ts', model, folder, out);
  assert.match(stdout, /6 rows of 192 \(train 6\)/);
  assert.match(stdout, /row 0: ant\/0\.png, class ant/);
  assert.equal(readFeatureFile(out).files, ['ant/0.png', 'ant/1.png', 'ant/2.png', 'bee/0.png', 'bee/1.png', 'bee/2.png']);
});

test.run();
