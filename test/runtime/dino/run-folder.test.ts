/**
 * The run folder: its metrics log cut back to the checkpoint on resume (a kill -9 leaves no duplicate step lines),
 * checks made before anything compiles, no folder left by a run that could not start, atomic config writes.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TrainConfig, applyOverrides } from '../../../runtime/dino/config.ts';
import { getPreset } from '../../../runtime/dino/presets.ts';
import { InitWeightsError, train } from '../../../runtime/dino/train.ts';
import { RUN_FILES, RunFolder, RunFolderError } from '../../../runtime/dino/run-folder.ts';
import { loadFashionMnist } from '../../../runtime/data/fashion-mnist.ts';
import type { Dataset } from '../../../runtime/data/dataset.ts';

const tiny: TrainConfig = applyOverrides(getPreset('fmnist-tiny6'), [
  'backbone.embedDim=32', 'backbone.depth=1', 'backbone.numHeads=2',
  'head.outDim=32', 'head.hiddenDim=32', 'head.bottleneckDim=8',
  'batch=8', 'augment.localCrops=1', 'steps=8', 'freezeLastLayerSteps=1',
]);
/** A config whose step graph does not build (6 heads do not divide 32 channels): reaching the compiler fails. */
const uncompilable = applyOverrides(tiny, ['backbone.numHeads=6']);
let data: Dataset;
const dirs: string[] = [];
const tmp = () => { const d = mkdtempSync(join(tmpdir(), 'dino-run-folder-')); dirs.push(d); return d; };
const quiet = { progress: 'none', log: () => {}, threads: 1 } as const;
const steps = (dir: string) => readFileSync(join(dir, RUN_FILES.metrics), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { step: number }).step);

test.before(async () => { data = await loadFashionMnist({ limitPerClass: 10 }); });
test.after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

test('cutMetrics keeps the rows up to the step and drops later ones and a torn line', () => {
  const folder = new RunFolder(tmp());
  folder.startMetrics();
  folder.appendMetrics([1, 2, 3, 4].map((step) => ({ step, loss: step / 10 })));
  appendFileSync(folder.metricsFile, '{"step":5,"lo');
  assert.is(folder.cutMetrics(2), 3);
  assert.equal(readFileSync(folder.metricsFile, 'utf8'), '{"step":1,"loss":0.1}\n{"step":2,"loss":0.2}\n');
  assert.is(folder.cutMetrics(2), 0, 'nothing left to cut');
  assert.equal(readdirSync(folder.dir), [RUN_FILES.metrics], 'no temp file left behind');
});

test('a run killed after its checkpoint (rows past it, a torn line) resumes with each step logged once', async () => {
  const out = tmp();
  await train({ config: tiny, out, dataset: data, stopAfter: 3, ...quiet });
  // What kill -9 after two more steps leaves: their rows, and half of a third, but the checkpoint of step 3.
  appendFileSync(join(out, RUN_FILES.metrics), '{"step":4,"loss":1}\n{"step":5,"loss":1}\n{"step":6,"lo');
  const r = await train({ config: tiny, out, dataset: data, resume: true, ...quiet });
  assert.is(r.steps, 8);
  assert.equal(steps(out), [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.ok(JSON.parse(readFileSync(join(out, RUN_FILES.metrics), 'utf8').split('\n')[3]!).loss !== 1, 'step 4 is the resumed run\'s');
});

test('an existing checkpoint and a resume with another config are refused before the step is compiled', async () => {
  const out = tmp();
  await train({ config: tiny, out, dataset: data, stopAfter: 1, ...quiet });
  // The config cannot compile: the run-folder error proves the check came first.
  try {
    await train({ config: uncompilable, out, dataset: data, ...quiet });
    assert.unreachable('accepted');
  } catch (e) {
    assert.instance(e, RunFolderError);
    assert.is((e as RunFolderError).problem.kind, 'exists');
  }
  try {
    await train({ config: uncompilable, out, dataset: data, resume: true, ...quiet });
    assert.unreachable('accepted');
  } catch (e) {
    assert.instance(e, RunFolderError);
    assert.is((e as RunFolderError).problem.kind, 'config-mismatch');
    assert.match((e as Error).message, /backbone\.numHeads: 2 -> 6/);
  }
});

test('a run that fails before its first step leaves no run folder behind (EP failure, initial weights that do not fit)', async () => {
  const parent = tmp();
  const out = join(parent, 'run');
  await train({ config: tiny, out, dataset: data, ep: 'cuda', ...quiet }).then(
    () => assert.unreachable('cuda started on a machine without its provider'),
    (e: Error) => assert.match(e.message, /cuda/),
  );
  assert.not.ok(existsSync(out), `${out} was created`);
  const badInit = new Map([['backbone.nope', new Float32Array(1)]]);
  await train({ config: tiny, out, dataset: data, initWeights: badInit, ...quiet }).then(
    () => assert.unreachable('accepted'),
    (e: Error) => assert.instance(e, InitWeightsError),
  );
  assert.not.ok(existsSync(out), `${out} was created`);
});

test('readConfig checks config.json, and config.json that drifted from the checkpoint is reported', async () => {
  const out = tmp();
  await train({ config: tiny, out, dataset: data, stopAfter: 1, ...quiet });
  const folder = new RunFolder(out);
  assert.equal(folder.readConfig(), folder.readCheckpointMeta().config);
  assert.equal(folder.configDrift(folder.readCheckpointMeta().config), []);
  writeFileSync(folder.configFile, JSON.stringify({ ...tiny, lr: 0.5 }));
  assert.equal(folder.configDrift(folder.readCheckpointMeta().config), [{ key: 'lr', was: tiny.lr, now: 0.5 }]);
  writeFileSync(folder.configFile, JSON.stringify({ ...tiny, lR: 0.5 }));
  assert.throws(() => folder.readConfig(), /config\.json is not a valid training config:\n {2}unknown key "lR"/);
  writeFileSync(folder.configFile, '{');
  assert.throws(() => folder.readConfig(), /config\.json: not valid JSON/);
  assert.throws(() => new RunFolder(join(out, 'nope')).readConfig(), /run folder .*nope does not exist: train one first/);
});

test.run();
