/**
 * `setup cuda` against a fake package layout (no download), the choice of onnxruntime-node build, the CUDA default
 * for steps per run, the WebGPU device-output plumbing, and `doctor` on this machine.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rejects } from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CUDA_BUILD, PROVIDER_LIBS, checkCudaLayout, copyProviderLibs, cudaDir, cudaLayout, embeddedOrtVersions, npmInstallArgs, nvidiaDriverFound, setupCuda,
} from '../../../runtime/ep/cuda-setup.ts';
import { chooseOrt, epFromArgv, preselectOrt } from '../../../runtime/ep/ort-select.ts';
import { defaultStepsPerRun } from '../../../runtime/ep/steps-per-run.ts';
import { stateToHost } from '../../../runtime/ep/device-state.ts';
import { deviceOutputLocations } from '../../../runtime/backend.ts';
import { doctor, remedyFor } from '../../../runtime/ep/doctor.ts';
import { epRemedy, ort, ortSessionOptions } from '../../../runtime/backend.ts';
import type { TrainState } from '../../../runtime/state.ts';

const dirs: string[] = [];
const tmp = () => { const d = mkdtempSync(join(tmpdir(), 'dino-ep-')); dirs.push(d); return d; };
test.after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** A native library stand-in: filler bytes with `version` embedded as a NUL-terminated string at `at`. */
function fakeLib(file: string, version: string | undefined, size = 4096, at = 1000): void {
  const bytes = Buffer.alloc(size, 0x41);
  if (version) Buffer.from(`\0${version}\0`, 'latin1').copy(bytes, at);
  writeFileSync(file, bytes);
}

/** The two packages as npm would lay them out in `dir`. */
function fakeInstall(dir: string, ortVersion: string, providerOrtVersion: string): void {
  const l = cudaLayout(dir);
  mkdirSync(l.ortNativeDir, { recursive: true });
  writeFileSync(join(l.ortPackage, 'package.json'), JSON.stringify({ name: 'onnxruntime-node', version: ortVersion }));
  fakeLib(join(l.ortNativeDir, 'libonnxruntime.so.1'), ortVersion);
  mkdirSync(l.providerLibDir, { recursive: true });
  fakeLib(join(l.providerLibDir, PROVIDER_LIBS[0]), providerOrtVersion);
  fakeLib(join(l.providerLibDir, PROVIDER_LIBS[1]), undefined, 100);
}

test('embedded ORT versions are found, also across read chunks', async () => {
  const d = tmp();
  fakeLib(join(d, 'a.so'), '1.29.0');
  assert.equal(await embeddedOrtVersions(join(d, 'a.so')), ['1.29.0']);
  fakeLib(join(d, 'b.so'), '1.30.0', (1 << 22) + 100, (1 << 22) - 4); // straddles the 4 MiB chunk boundary
  assert.equal(await embeddedOrtVersions(join(d, 'b.so')), ['1.30.0']);
  fakeLib(join(d, 'c.so'), undefined);
  assert.equal(await embeddedOrtVersions(join(d, 'c.so')), []);
});

test('layout check: nothing installed, providers not copied, versions that differ, and a good install', async () => {
  const empty = await checkCudaLayout(tmp());
  assert.not.ok(empty.ok);
  assert.match(empty.problems.join('\n'), /no onnxruntime-node .*npx dino setup cuda/);

  const good = tmp();
  fakeInstall(good, '1.29.0', '1.29.0');
  const before = await checkCudaLayout(good);
  assert.not.ok(before.ok);
  assert.match(before.problems.join('\n'), /libonnxruntime_providers_cuda.so is not next to libonnxruntime.so.1/);
  const copied = copyProviderLibs(good);
  assert.equal(copied, PROVIDER_LIBS.map((l) => join(cudaLayout(good).ortNativeDir, l)));
  assert.equal(readFileSync(copied[0]!), readFileSync(join(cudaLayout(good).providerLibDir, PROVIDER_LIBS[0])));
  const after = await checkCudaLayout(good);
  assert.ok(after.ok, after.problems.join('\n'));
  assert.equal([after.ortPackageVersion, after.ortLibVersions, after.providerVersions], ['1.29.0', ['1.29.0'], ['1.29.0']]);

  const mismatch = tmp();
  fakeInstall(mismatch, '1.30.0', '1.29.0');
  copyProviderLibs(mismatch);
  const bad = await checkCudaLayout(mismatch);
  assert.not.ok(bad.ok);
  assert.match(bad.problems.join('\n'), /version mismatch: libonnxruntime.so.1 is ORT 1.30.0, the CUDA provider is ORT 1.29.0/);

  const noProvider = tmp();
  mkdirSync(cudaLayout(noProvider).ortNativeDir, { recursive: true });
  assert.throws(() => copyProviderLibs(noProvider), /com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9 is not installed/);
});

test('setup cuda: npm from the registry with the install script skipped, then copy and check', async () => {
  const { args, env } = npmInstallArgs('/x');
  assert.equal(args.slice(0, 3), ['install', '--prefix', '/x']);
  assert.ok(args.includes('onnxruntime-node@1.29.0') && args.includes('com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9'), args.join(' '));
  assert.equal(env, { ONNXRUNTIME_NODE_INSTALL: 'skip' });
  assert.is(CUDA_BUILD.ortVersion, '1.29.0');

  const dir = tmp();
  const calls: string[][] = [];
  const lines: string[] = [];
  const check = await setupCuda({ dir, log: (l) => lines.push(l), run: async (cmd, a, e) => { calls.push([cmd, ...a, e['ONNXRUNTIME_NODE_INSTALL']!]); fakeInstall(dir, '1.29.0', '1.29.0'); return 0; } });
  assert.ok(check.ok);
  assert.is(calls.length, 1);
  assert.is(calls[0]![0], 'npm');
  assert.is(calls[0]!.at(-1), 'skip');
  assert.ok(existsSync(join(dir, 'package.json')), 'a package.json of its own, so npm does not edit the project\'s');
  const text = lines.join('\n');
  assert.match(text, /libcublas.so.13/);
  assert.match(text, /libcudart.so.13/);
  assert.match(text, /libcurand.so.10/);
  assert.match(text, /libcudnn.so.9/);
  assert.match(text, /export LD_LIBRARY_PATH=.*nvidia\/cu13\/lib.*nvidia\/cudnn\/lib/);

  await rejects(() => setupCuda({ dir: tmp(), log: () => {}, run: async () => 1 }), /failed with exit code 1/);
  const wrong = tmp();
  await rejects(() => setupCuda({ dir: wrong, log: () => {}, run: async () => { fakeInstall(wrong, '1.29.0', '1.28.0'); return 0; } }), /version mismatch/);
});

test('the onnxruntime-node build: the setup cuda one only for DINO_EP=cuda and only when installed', () => {
  const root = tmp();
  assert.is(cudaDir(root, {}), join(root, '.dino', 'cuda'));
  assert.is(cudaDir(root, { DINO_CUDA_DIR: '/opt/c' }), '/opt/c');
  assert.equal(chooseOrt({ DINO_EP: 'cuda' }, root), { module: 'onnxruntime-node', kind: 'default' });
  const dir = cudaDir(root, {});
  fakeInstall(dir, '1.29.0', '1.29.0');
  copyProviderLibs(dir);
  assert.equal(chooseOrt({ DINO_EP: 'cuda' }, root), { module: cudaLayout(dir).ortPackage, kind: 'cuda-setup' });
  assert.equal(chooseOrt({ DINO_EP: 'cpu' }, root).kind, 'default');
  assert.equal(chooseOrt({}, root).kind, 'default');
  assert.is(epFromArgv(['--steps', '3', '--ep', 'cuda']), 'cuda');
  assert.is(epFromArgv(['--ep=webgpu']), 'webgpu');
  assert.is(epFromArgv(['--steps', '3']), undefined);
  const env: NodeJS.ProcessEnv = {};
  preselectOrt(['train', '--ep', 'cuda'], env);
  assert.is(env['DINO_EP'], 'cuda');
  const set: NodeJS.ProcessEnv = { DINO_EP: 'cpu' };
  preselectOrt(['--ep', 'cuda'], set);
  assert.is(set['DINO_EP'], 'cpu');
});

test('steps per run: 1 off CUDA; on CUDA the largest K <= 8 dividing the checkpoint/log intervals', () => {
  assert.is(defaultStepsPerRun('cpu', [100]), 1);
  assert.is(defaultStepsPerRun('webgpu'), 1);
  assert.is(defaultStepsPerRun('cuda'), 8);
  assert.is(defaultStepsPerRun('cuda', [undefined, 0]), 8);
  assert.is(defaultStepsPerRun('cuda', [100]), 5);
  assert.is(defaultStepsPerRun('cuda', [1000]), 8);
  assert.is(defaultStepsPerRun('cuda', [12, 8]), 4);
  assert.is(defaultStepsPerRun('cuda', [7]), 7);
  assert.is(defaultStepsPerRun('cuda', [11]), 1);
});

test('WebGPU keeps the named outputs on the device; other EPs get no location option', () => {
  assert.equal(deviceOutputLocations('webgpu', ['next.a', 'next.b']), { 'next.a': 'gpu-buffer', 'next.b': 'gpu-buffer' });
  assert.is(deviceOutputLocations('cuda', ['next.a']), undefined);
  assert.is(deviceOutputLocations('webgpu', []), undefined);
  assert.equal(ortSessionOptions({ ep: 'webgpu', deviceOutputs: ['next.w'] }).preferredOutputLocation, { 'next.w': 'gpu-buffer' });
  assert.not.ok('preferredOutputLocation' in ortSessionOptions({ ep: 'cpu', deviceOutputs: ['next.w'] }));
  assert.equal(ortSessionOptions({ ep: 'cuda' }).executionProviders, ['cuda']);
});

test('stateToHost: device tensors are downloaded and replaced, host tensors kept as they are', async () => {
  const host = new ort.Tensor('float32', Float32Array.of(1, 2), [2]);
  let released = false;
  const device = { location: 'gpu-buffer', type: 'float32', dims: [3], getData: async (release?: boolean) => { released = release === true; return Float32Array.of(4, 5, 6); } };
  const map = new Map<string, unknown>([['a', host], ['b', device]]);
  const state = { names: () => [...map.keys()], get: (n: string) => map.get(n), set: (n: string, t: unknown) => map.set(n, t) } as unknown as TrainState;
  await stateToHost(state);
  assert.is(map.get('a'), host);
  const b = map.get('b') as ort.Tensor;
  assert.is(b.location, 'cpu');
  assert.equal([...(b.data as Float32Array)], [4, 5, 6]);
  assert.equal(b.dims, [3]);
  assert.ok(released);
});

test('remedies name the command that fixes the EP', () => {
  assert.match(epRemedy('cuda', { module: 'onnxruntime-node', kind: 'default' }, '', true), /npx dino setup cuda.*ONNXRUNTIME_NODE_INSTALL=cuda12/);
  assert.match(epRemedy('cuda', { module: '/p', kind: 'cuda-setup' }, '', true), /LD_LIBRARY_PATH/);
  assert.match(remedyFor('cuda', { nvidiaDriver: true }).join(' '), /npx dino setup cuda/);
  assert.match(remedyFor('cuda', { cudaInstalled: true, nvidiaDriver: true, error: 'libcublasLt.so.13: cannot open shared object file' }).join(' '), /libcublasLt.so.13 was not found.*LD_LIBRARY_PATH/);
  assert.match(remedyFor('webgpu').join(' '), /Vulkan/);
  assert.match(remedyFor('wasm').join(' '), /onnxruntime-web/);
});

test('without the NVIDIA driver the CUDA remedy says so, whatever else is installed', () => {
  const error = 'Failed to load shared library libonnxruntime_providers_cuda.so';
  for (const ctx of [{ cudaInstalled: false }, { cudaInstalled: true }, { cudaInstalled: true, cudaBuildLoaded: true }]) {
    const lines = remedyFor('cuda', { ...ctx, error, nvidiaDriver: false }).join(' ');
    assert.match(lines, /the NVIDIA driver is missing: libcuda\.so\.1 was not found/);
    assert.not.match(lines, /npx dino setup cuda/); // setup cannot fix a missing driver
  }
  assert.match(epRemedy('cuda', { module: '/p', kind: 'cuda-setup' }, error, false), /NVIDIA driver is missing/);
});

test('nvidiaDriverFound: a library the loader finds counts, a missing one does not', () => {
  assert.is(nvidiaDriverFound('libdino-no-such-library.so.1'), false);
  // libc is on every Linux loader path: it loads, and then fails only as "not a Node addon".
  if (process.platform === 'linux') assert.is(nvidiaDriverFound('libc.so.6'), true);
});

test('setup cuda: warns before downloading when the NVIDIA driver is missing, and states the download size', async () => {
  const dir = tmp();
  const lines: string[] = [];
  let npmAt = -1;
  await setupCuda({ dir, log: (l) => lines.push(l), driverFound: () => false, run: async () => { npmAt = lines.length; fakeInstall(dir, '1.29.0', '1.29.0'); return 0; } });
  const warning = lines.findIndex((l) => /^warning: the NVIDIA driver is missing: libcuda\.so\.1/.test(l));
  const size = lines.findIndex((l) => /downloads ~440 MB from npm, ~1\.1 GB on disk/.test(l));
  assert.ok(warning >= 0 && size >= 0, lines.join('\n'));
  assert.ok(warning < npmAt && size < npmAt, 'both are said before npm runs');
  const quiet: string[] = [], dir2 = tmp();
  await setupCuda({ dir: dir2, log: (l) => quiet.push(l), driverFound: () => true, run: async () => { fakeInstall(dir2, '1.29.0', '1.29.0'); return 0; } });
  assert.not.ok(quiet.some((l) => l.startsWith('warning:')), quiet.join('\n'));
});

test('doctor on this machine: cpu starts; an EP that does not start is explained with its remedy', async () => {
  const r = await doctor();
  const byEp = Object.fromEntries(r.results.map((x) => [x.ep, x]));
  assert.ok(byEp['cpu']!.ok, r.text);
  assert.match(r.text, /^cpu {5}starts/m);
  for (const ep of ['cuda', 'webgpu'] as const) {
    if (byEp[ep]!.ok) continue; // a GPU machine: nothing to explain
    assert.ok(byEp[ep]!.error && byEp[ep]!.error.length > 0, r.text);
    assert.match(r.text, new RegExp(`^${ep} +does not start`, 'm'));
  }
  if (!byEp['cuda']!.ok) assert.match(r.text, nvidiaDriverFound() ? /npx dino setup cuda/ : /the NVIDIA driver is missing/);
  assert.ok(byEp['wasm']!.ok, r.text); // onnxruntime-web's WASM runs everywhere Node does
  assert.match(r.text, /^wasm {4}starts {2}\(onnxruntime-web /m);
  if (!byEp['webgpu']!.ok) assert.match(r.text, /Vulkan/);
  assert.match(r.text, /^setup cuda: /m);
});

test.run();
