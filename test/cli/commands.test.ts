/**
 * The command line as a user meets it: the real entry (`bin/dino.mjs`, what `npx dino` runs) spawned as a process,
 * checked by exit code and message. A tiny model (`--set`) keeps each training run to seconds.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { vitTiny } from '../../models/presets.ts';
import { readPth } from '../../runtime/io/pth.ts';
import { makeRun } from '../exports/helpers.ts';
import { readSafetensors } from '../../runtime/io/safetensors.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'dino-commands-'));
test.after(() => fs.rmSync(DIR, { recursive: true, force: true }));

interface Result { code: number | null; stdout: string; stderr: string }

function start(args: readonly string[]): { child: ChildProcess; done: Promise<Result> } {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/dino.mjs'), ...args], { cwd: DIR, env: { ...process.env, NO_COLOR: '1' } });
  let stdout = '', stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d));
  child.stderr!.on('data', (d: Buffer) => (stderr += d));
  const done = new Promise<Result>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  return { child, done };
}
const dino = (...args: string[]) => start(args).done;

const TINY = [
  '--preset', 'fmnist-tiny6', '--batch', '8', '--local-crops', '2', '--threads', '1',
  ...['backbone.embedDim=32', 'backbone.depth=1', 'backbone.numHeads=2', 'backbone.mlpRatio=2', 'head.outDim=64', 'head.hiddenDim=32', 'head.bottleneckDim=16', 'freezeLastLayerSteps=2']
    .flatMap((s) => ['--set', s]),
];

/** The state tensors of a checkpoint, as bytes by name. */
function checkpointBytes(dir: string): Map<string, Buffer> {
  const { tensors } = readSafetensors(path.join(dir, 'checkpoint.safetensors'));
  return new Map([...tensors].map(([k, t]) => [k, Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)]));
}

function assertSameState(a: string, b: string): void {
  const x = checkpointBytes(a), y = checkpointBytes(b);
  assert.equal([...x.keys()].sort(), [...y.keys()].sort());
  for (const [k, v] of x) assert.ok(v.equals(y.get(k)!), `${k} differs`);
}

test('-h and --help on every command print its options and exit 0; --version', async () => {
  const top = await dino('--help');
  assert.is(top.code, 0);
  const commands = [...top.stdout.matchAll(/^ {2}([a-z]+) {2,}/gm)].map((m) => m[1]!);
  assert.ok(commands.length >= 13, top.stdout);
  for (const c of commands) {
    for (const flag of ['-h', '--help']) {
      const r = await dino(c, flag);
      assert.is(r.code, 0, `${c} ${flag}: ${r.stderr}`);
      assert.match(r.stdout, new RegExp(`^usage: dino ${c}`), `${c} ${flag}`);
      assert.match(r.stdout, /-h, --help/);
    }
  }
  const train = await dino('train', '--help');
  assert.match(train.stdout, /--ep cpu\|cuda\|webgpu\s+ONNX Runtime execution provider \(default: cpu\)/);
  const v = await dino('--version');
  assert.is(v.code, 0);
  assert.match(v.stdout, /^dino-ts \d+\.\d+\.\d+/);
});

test('usage mistakes exit 2 naming the flag, with a suggestion for a typo', async () => {
  const cases: [string[], RegExp][] = [
    [['trian'], /unknown command "trian" \(did you mean train\?\)/],
    [['train', '--step', '5'], /unknown option --step \(did you mean --steps\?\)/],
    [['train', '--steps', 'abc'], /--steps must be an integer >= 1, got "abc"/],
    [['train', '--steps', '-5'], /--steps must be an integer >= 1, got "-5"/],
    [['train', '--steps', '1.5'], /--steps must be an integer >= 1, got "1.5"/],
    [['train', '--ep', 'cdua'], /--ep must be one of cpu, cuda, webgpu, got "cdua" \(did you mean cuda\?\)/],
    [['attention', 'x.png', '--threshold', 'abc', '--model', 'm.onnx'], /--threshold must be a number from 0 to 1, got "abc"/],
    [['attention'], /missing IMAGE/],
    [['report'], /--run DIR is required/],
    [['knn'], /name the model: --run DIR/],
    [['inspect', '--preset', 'fmnist-quik'], /unknown preset "fmnist-quik" \(did you mean fmnist-quick\?\)/],
    [['setup', 'cdua'], /dino setup knows one target, "cuda"/],
    [['train', '--resume'], /--resume needs the run folder/],
    [['knn', '--run', 'r', '--nb-knn', '10,0'], /--nb-knn must be a comma-separated list of integers >= 1/],
    [['knn', '--run', 'r', '--temperature', '0'], /--temperature must be a number > 0, got "0"/],
    [['linear', '--run', 'r', '--n-last-blocks', '0'], /--n-last-blocks must be an integer >= 1/],
    [['knn', '--run', 'r', '--model', 'm.onnx'], /--run and --model both name the model/],
    [['features', '--run', 'r'], /--out FILE.safetensors or FILE.npy is required/],
    [['features', '--run', 'r', '--out', 'f.pt'], /--out f.pt: the file must end in .safetensors or .npy/],
    [['knn', '--features', 'f.safetensors', '--run', 'r'], /--features gives the features: --run does not apply with it/],
    [['linear', '--features', 'f.safetensors', '--n-last-blocks', '4'], /pass them to dino features instead of --features/],
    [['bench', '--precision', 'bf17'], /--precision must be one of fp32, fp16, bf16/],
    // bf16 is a valid --precision of dino bench: what is refused is a precision for the full report.
    [['bench', '--preset', 'fmnist-tiny6', '--precision', 'bf16'], /--steps-per-run, --precision and --set apply to --train-only/],
  ];
  for (const [args, message] of cases) {
    const r = await dino(...args);
    assert.is(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message, args.join(' '));
  }
});

test('inspect accepts the training presets, the default one included', async () => {
  const r = await dino('inspect', '--preset', 'fmnist-quick');
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /preset fmnist-quick/);
});

test('start refuses a folder it did not create, and deletes nothing', async () => {
  const mine = path.join(DIR, 'precious');
  fs.mkdirSync(mine);
  fs.writeFileSync(path.join(mine, 'notes.txt'), 'keep me');
  const r = await dino('start', '--out', mine, '--steps', '1');
  assert.is(r.code, 2, r.stderr);
  assert.match(r.stderr, /precious exists and was not made by dino start; nothing was deleted/);
  assert.is(fs.readFileSync(path.join(mine, 'notes.txt'), 'utf8'), 'keep me');
});

test('start --preset names the presets it takes when given another', async () => {
  const r = await dino('start', '--preset', 'fmnist-longer', '--out', path.join(DIR, 'never'));
  assert.is(r.code, 2, r.stderr);
  assert.match(r.stderr, /fmnist-quick, fmnist-long, fmnist-tiny6, fmnist-tiny12/);
  assert.not.ok(fs.existsSync(path.join(DIR, 'never')));
});

test('resume from the run folder alone; a changed architecture is refused naming the key; a longer run is allowed', async () => {
  const run = path.join(DIR, 'resume');
  const first = await dino('train', ...TINY, '--steps', '6', '--out', run);
  assert.is(first.code, 0, first.stderr);
  assert.not.match(first.stderr, /\r/, 'no progress-bar redraws when stderr is not a terminal');
  assert.match(first.stderr, /\[#+-*\] 6\/6 {2}loss/, 'plain progress lines instead');
  const changed = await dino('train', '--resume', run, '--set', 'backbone.depth=2');
  assert.is(changed.code, 2, changed.stderr);
  assert.match(changed.stderr, /--set would change backbone\.depth: 1 -> 2/);
  const batch = await dino('train', '--resume', run, '--batch', '16');
  assert.match(batch.stderr, /--batch would change batch: 8 -> 16/);
  for (const precision of ['fp16', 'bf16']) {
    const changedPrecision = await dino('train', '--resume', run, '--precision', precision);
    assert.is(changedPrecision.code, 2, changedPrecision.stderr);
    assert.match(changedPrecision.stderr, new RegExp(`--precision would change precision: .* -> "?${precision}`));
  }
  const same = await dino('train', '--resume', run, '--batch', '8', '--steps', '6');
  assert.is(same.code, 0, `the run's own values are accepted: ${same.stderr}`);
  const shorter = await dino('train', '--resume', run, '--steps', '4');
  assert.is(shorter.code, 2);
  assert.match(shorter.stderr, /has done 6 steps already/);
  const longer = await dino('train', '--resume', run, '--steps', '8');
  assert.is(longer.code, 0, longer.stderr);
  assert.match(longer.stderr, /extending the run from 6 to 8 steps/);
  assert.is(JSON.parse(fs.readFileSync(path.join(run, 'config.json'), 'utf8')).steps, 8);
  assert.is(fs.readFileSync(path.join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').length, 8);
  const missing = await dino('train', '--resume', path.join(DIR, 'nope'));
  assert.is(missing.code, 2);
  assert.match(missing.stderr, /no checkpoint\.safetensors there/);
});

test('Ctrl-C saves a checkpoint; resuming from the folder gives the uninterrupted run bit for bit', async () => {
  const steps = ['--steps', '24'];
  const whole = path.join(DIR, 'whole');
  const a = await dino('train', ...TINY, ...steps, '--out', whole);
  assert.is(a.code, 0, a.stderr);

  const cut = path.join(DIR, 'cut');
  const { child, done } = start(['train', ...TINY, ...steps, '--out', cut]);
  const metrics = path.join(cut, 'metrics.jsonl');
  const lines = () => (fs.existsSync(metrics) ? fs.readFileSync(metrics, 'utf8').trim().split('\n').filter(Boolean).length : 0);
  for (let waited = 0; lines() < 3 && waited < 120_000; waited += 50) await new Promise((r) => setTimeout(r, 50));
  child.kill('SIGINT');
  const b = await done;
  assert.is(b.code, 130, b.stderr);
  assert.match(b.stdout, /interrupted after (\d+) steps/);
  const stoppedAt = Number(/interrupted after (\d+) steps/.exec(b.stdout)![1]);
  assert.ok(stoppedAt >= 3 && stoppedAt < 24, `stopped at ${stoppedAt}`);
  assert.match(b.stdout, /resume with: npx dino train --resume/);

  // Bit-identity needs the same intra-op threads (ORT's parallel reductions round by thread count); the default
  // (one per core) is the same on the same machine, this test pins 1.
  const c = await dino('train', '--resume', cut, '--threads', '1');
  assert.is(c.code, 0, c.stderr);
  assertSameState(whole, cut);
  assert.is(fs.readFileSync(path.join(cut, 'metrics.jsonl'), 'utf8').trim().split('\n').length, 24);
});

test('export --format pth|safetensors: the teacher backbone under DINO keys, read back identical', async () => {
  const run = path.join(DIR, 'resume'); // trained above
  const pth = await dino('export', '--run', run, '--format', 'pth');
  assert.is(pth.code, 0, pth.stderr);
  const st = await dino('export', '--run', run, '--out', path.join(run, 'w.safetensors'));
  assert.is(st.code, 0, st.stderr);
  const state = readSafetensors(path.join(run, 'checkpoint.safetensors')).tensors;
  const fromPth = readPth(path.join(run, 'teacher.pth')) as Map<string, { data: Float32Array; shape: number[] }>;
  const fromSt = readSafetensors(path.join(run, 'w.safetensors')).tensors;
  const backbone = [...state.keys()].filter((k) => k.startsWith('teacher.backbone.'));
  assert.equal([...fromPth.keys()].sort(), backbone.map((k) => k.slice('teacher.backbone.'.length)).sort());
  for (const k of backbone) {
    const key = k.slice('teacher.backbone.'.length);
    const want = Buffer.from(state.get(k)!.data.buffer, state.get(k)!.data.byteOffset, state.get(k)!.data.byteLength);
    const p = fromPth.get(key)!, s = fromSt.get(key)!;
    assert.ok(Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength).equals(want), `${key} (.pth)`);
    assert.ok(Buffer.from(s.data.buffer, s.data.byteOffset, s.data.byteLength).equals(want), `${key} (.safetensors)`);
  }
  const knn = await dino('knn', '--run', run, '--nb-knn', '5,10', '--temperature', '0.1', '--limit-train', '300', '--limit-test', '100', '--json');
  assert.is(knn.code, 0, knn.stderr);
  const result = JSON.parse(knn.stdout) as { top1: Record<string, number>; n_train: number; n_test: number };
  assert.equal(Object.keys(result.top1).sort(), ['10', '5']);
  assert.equal([result.n_train, result.n_test], [300, 100]);
  const clash = await dino('export', '--run', run, '--format', 'pth', '--out', path.join(run, 'x.safetensors'));
  assert.is(clash.code, 2);
  assert.match(clash.stderr, /--format pth but --out .*x\.safetensors ends in \.safetensors/);
});

test('export picks the format from --out (.pt is PyTorch), refuses an unknown extension, and prints the PyTorch lines with img_size', async () => {
  // A ViT-Tiny/16 trained at 64 px: DINO's vits.vit_tiny(patch_size=16) alone would build a 224 px position table.
  const run = makeRun(path.join(DIR, 'at64'), { config: { backbone: { ...vitTiny({ imgSize: 64 }) } } }).dir;
  const pt = await dino('export', '--run', run, '--out', path.join(run, 'teacher.pt'));
  assert.is(pt.code, 0, pt.stderr);
  assert.match(pt.stdout, /\(\d+\.\d MB, pth\)/);
  assert.match(pt.stdout, /model = vits\.vit_tiny\(patch_size=16, img_size=\[64\]\)\n.*model\.load_state_dict\(torch\.load\('teacher\.pt', weights_only=True\)\)/);
  const fromPt = readPth(path.join(run, 'teacher.pt')) as Map<string, { shape: number[] }>;
  assert.equal(fromPt.get('pos_embed')!.shape, [1, 17, 192], '(64 / 16)^2 patches + [CLS]');
  const unknown = await dino('export', '--run', run, '--out', path.join(run, 'teacher.bin'));
  assert.is(unknown.code, 2);
  assert.match(unknown.stderr, /teacher\.bin: name the format with the extension \(\.onnx, \.pth or \.pt, \.safetensors\) or with --format/);
  assert.not.ok(fs.existsSync(path.join(run, 'teacher.bin')));
  const clash = await dino('export', '--run', run, '--format', 'onnx', '--out', path.join(run, 'x.pt'));
  assert.is(clash.code, 2);
  assert.match(clash.stderr, /--format onnx but --out .*x\.pt ends in \.pt \(a pth file\)/);
});

test.run();
