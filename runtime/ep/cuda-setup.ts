/**
 * `dino setup cuda`: the CUDA execution provider from the npm registry alone (docs/ARCHITECTURE.md, "GPU").
 *
 * onnxruntime-node's Linux x64 binary can run the CUDA EP, but its install script fetches the provider
 * libraries from outside npm. The npm package `com.github.asus4.onnxruntime.linux-x64-gpu` ships the same
 * libraries (`Plugins/Linux/x64/libonnxruntime_providers_{cuda,shared}.so`) built from one ORT release, so this
 * installs that package and the onnxruntime-node of exactly that release side by side in a project-local folder
 * (`.dino/cuda`, or `$DINO_CUDA_DIR`) and copies the two provider libraries next to its `libonnxruntime.so.1`,
 * where ORT looks for them. A provider only loads into the ORT build it came from, so the versions are checked
 * from the bytes of both libraries, not from package names.
 */
import { spawn } from 'node:child_process';
import { copyFileSync, createReadStream, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** The pairing: provider package 0.4.9 is ORT 1.29.0 built for CUDA 13. */
export const CUDA_BUILD = Object.freeze({
  ortVersion: '1.29.0',
  providerPackage: 'com.github.asus4.onnxruntime.linux-x64-gpu',
  providerPackageVersion: '0.4.9',
  cudaMajor: 13,
});

export const PROVIDER_LIBS = ['libonnxruntime_providers_cuda.so', 'libonnxruntime_providers_shared.so'] as const;

/** Where onnxruntime-node keeps its native libraries on Linux x64. */
const ORT_NATIVE_DIR = join('bin', 'napi-v6', 'linux', 'x64');
const PROVIDER_SUBDIR = join('Plugins', 'Linux', 'x64');

/** What the CUDA provider still needs from the system, with where NVIDIA's pip wheels put it. */
export const CUDA_LIBRARIES: readonly { lib: string; what: string; wheel: string }[] = [
  { lib: 'libcudart.so.13', what: 'CUDA 13 runtime', wheel: 'nvidia-cuda-runtime-cu13 (nvidia/cu13/lib)' },
  { lib: 'libcublas.so.13, libcublasLt.so.13', what: 'cuBLAS 13', wheel: 'nvidia-cublas-cu13 (nvidia/cu13/lib)' },
  { lib: 'libcurand.so.10', what: 'cuRAND 10', wheel: 'nvidia-curand-cu13 (nvidia/cu13/lib)' },
  { lib: 'libcudnn.so.9', what: 'cuDNN 9, loaded only for convolutions (the ViT patch embedding)', wheel: 'nvidia-cudnn-cu13 (nvidia/cudnn/lib)' },
  { lib: 'libcuda.so.1', what: 'the NVIDIA driver (580 or newer for CUDA 13)', wheel: 'installed with the driver, not by pip' },
];

/**
 * What `setup cuda` fetches and installs (measured 2026-12-07, bench/RESULTS.md "setup cuda"): the three npm tarballs
 * (the provider package, the package it depends on, onnxruntime-node 1.29.0) come to ~440 MB, unpacked with the
 * provider libraries copied next to libonnxruntime.so.1 to ~1.1 GB.
 */
export const CUDA_SETUP_SIZE = Object.freeze({ downloadMb: 440, diskGb: 1.1 });

/** The NVIDIA driver's library: the CUDA provider cannot start without it, whatever else is installed. */
export const NVIDIA_DRIVER_LIB = 'libcuda.so.1';

/**
 * Whether the NVIDIA driver's `libcuda.so.1` loads here, found as the CUDA runtime finds it (the loader's search:
 * LD_LIBRARY_PATH, the ld.so cache, the system folders). Node's `process.dlopen` loads the library and then fails
 * only because it is not a Node addon; a missing library fails with "cannot open shared object file" instead.
 */
export function nvidiaDriverFound(lib: string = NVIDIA_DRIVER_LIB): boolean {
  if (process.platform !== 'linux') return false;
  try {
    process.dlopen({ exports: {} }, lib);
    return true; // not reached for a real driver library, which registers no addon
  } catch (e) {
    return !/cannot open shared object file|No such file/i.test((e as Error).message);
  }
}

/** What to tell a user whose machine has no NVIDIA driver. */
export function nvidiaDriverAdvice(): string[] {
  return [
    `the NVIDIA driver is missing: ${NVIDIA_DRIVER_LIB} was not found. Install the NVIDIA driver (580 or newer for CUDA ${CUDA_BUILD.cudaMajor}),`,
    'or, on a machine without an NVIDIA GPU, use the CPU provider (or the WebGPU provider where a Vulkan/Metal/D3D12 GPU driver is present).',
  ];
}

/** The CUDA folder: `$DINO_CUDA_DIR`, else `<root>/.dino/cuda`. */
export function cudaDir(root: string = process.cwd(), env: NodeJS.ProcessEnv = process.env): string {
  return env['DINO_CUDA_DIR'] ? resolve(env['DINO_CUDA_DIR']) : join(resolve(root), '.dino', 'cuda');
}

export interface CudaLayout {
  readonly dir: string;
  /** The side-by-side onnxruntime-node package. */
  readonly ortPackage: string;
  /** Its native folder, where `libonnxruntime.so.1` is and the provider libraries go. */
  readonly ortNativeDir: string;
  /** The provider package's library folder. */
  readonly providerLibDir: string;
}

export function cudaLayout(dir: string): CudaLayout {
  const ortPackage = join(dir, 'node_modules', 'onnxruntime-node');
  return {
    dir, ortPackage, ortNativeDir: join(ortPackage, ORT_NATIVE_DIR),
    providerLibDir: join(dir, 'node_modules', CUDA_BUILD.providerPackage, PROVIDER_SUBDIR),
  };
}

/** The npm command that installs both packages into `dir` (argv after `npm`, and the environment). */
export function npmInstallArgs(dir: string): { args: string[]; env: Record<string, string> } {
  return {
    args: [
      'install', '--prefix', dir, '--no-save', '--no-package-lock', '--no-audit', '--no-fund',
      `onnxruntime-node@${CUDA_BUILD.ortVersion}`, `${CUDA_BUILD.providerPackage}@${CUDA_BUILD.providerPackageVersion}`,
    ],
    // onnxruntime-node's install script would download the CUDA libraries from outside npm: skip it.
    env: { ONNXRUNTIME_NODE_INSTALL: 'skip' },
  };
}

/**
 * ORT release numbers ("1.29.0") embedded in a native library as NUL-terminated strings, read in chunks so a
 * 230 MB provider library is never held whole.
 */
export async function embeddedOrtVersions(file: string): Promise<string[]> {
  const found = new Set<string>();
  const pattern = /\x00(1\.\d{1,3}\.\d{1,3})\x00/g;
  let tail = '';
  for await (const chunk of createReadStream(file, { encoding: 'latin1', highWaterMark: 1 << 22 })) {
    const text = tail + (chunk as string);
    for (const m of text.matchAll(pattern)) found.add(m[1]!);
    tail = text.slice(-16); // a version string may straddle two chunks
  }
  return [...found].sort();
}

export interface CudaCheck {
  readonly ok: boolean;
  /** onnxruntime-node's package.json version, if installed. */
  readonly ortPackageVersion?: string;
  /** ORT versions found in `libonnxruntime.so.1` and in the CUDA provider library. */
  readonly ortLibVersions: string[];
  readonly providerVersions: string[];
  /** What is wrong, each with its remedy. */
  readonly problems: string[];
}

/** Checks that `dir` holds a onnxruntime-node with the CUDA provider libraries of the same ORT release. */
export async function checkCudaLayout(dir: string): Promise<CudaCheck> {
  const l = cudaLayout(dir);
  const problems: string[] = [];
  const again = 'run `npx dino setup cuda` again';
  let ortPackageVersion: string | undefined;
  try {
    ortPackageVersion = (JSON.parse(readFileSync(join(l.ortPackage, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    problems.push(`no onnxruntime-node in ${l.ortPackage}: ${again}`);
  }
  const ortLib = join(l.ortNativeDir, 'libonnxruntime.so.1');
  const ortLibVersions = existsSync(ortLib) ? await embeddedOrtVersions(ortLib) : [];
  if (ortPackageVersion !== undefined && !existsSync(ortLib)) problems.push(`${ortLib} is missing (onnxruntime-node ${ortPackageVersion} has no Linux x64 build here?): ${again}`);
  for (const lib of PROVIDER_LIBS) {
    if (!existsSync(join(l.ortNativeDir, lib))) problems.push(`${lib} is not next to libonnxruntime.so.1 in ${l.ortNativeDir}: ${again}`);
  }
  const provider = join(l.ortNativeDir, PROVIDER_LIBS[0]);
  const providerVersions = existsSync(provider) ? await embeddedOrtVersions(provider) : [];
  if (existsSync(ortLib) && existsSync(provider)) {
    const shared = ortLibVersions.filter((v) => providerVersions.includes(v));
    if (shared.length === 0) {
      problems.push(
        `version mismatch: libonnxruntime.so.1 is ORT ${ortLibVersions.join('/') || '?'}, the CUDA provider is ORT ${providerVersions.join('/') || '?'}; ` +
          `a provider only loads into its own ORT build: ${again} (it installs onnxruntime-node ${CUDA_BUILD.ortVersion} with ${CUDA_BUILD.providerPackage}@${CUDA_BUILD.providerPackageVersion})`,
      );
    }
  }
  return { ok: problems.length === 0, ...(ortPackageVersion !== undefined ? { ortPackageVersion } : {}), ortLibVersions, providerVersions, problems };
}

/** Copies the provider libraries from the provider package next to `libonnxruntime.so.1`. Returns the copies. */
export function copyProviderLibs(dir: string): string[] {
  const l = cudaLayout(dir);
  if (!existsSync(l.ortNativeDir)) throw new Error(`${l.ortNativeDir} does not exist: onnxruntime-node ${CUDA_BUILD.ortVersion} is not installed in ${dir}`);
  return PROVIDER_LIBS.map((lib) => {
    const from = join(l.providerLibDir, lib);
    if (!existsSync(from)) throw new Error(`${from} does not exist: ${CUDA_BUILD.providerPackage}@${CUDA_BUILD.providerPackageVersion} is not installed in ${dir} (or its layout changed)`);
    const to = join(l.ortNativeDir, lib);
    copyFileSync(from, to);
    return to;
  });
}

/** The lines telling the user which CUDA libraries the provider still needs and how to point at them. */
export function cudaLibraryAdvice(): string[] {
  return [
    `The CUDA provider (ORT ${CUDA_BUILD.ortVersion}, CUDA ${CUDA_BUILD.cudaMajor}) still needs these libraries on the loader path:`,
    ...CUDA_LIBRARIES.map((c) => `  ${c.lib.padEnd(36)} ${c.what}; pip: ${c.wheel}`),
    'From a CUDA toolkit install, or from NVIDIA\'s pip wheels, e.g.:',
    '  pip install nvidia-cuda-runtime-cu13 nvidia-cublas-cu13 nvidia-curand-cu13 nvidia-cudnn-cu13',
    '  SITE=$(python3 -c "import site; print(site.getsitepackages()[0])")',
    '  export LD_LIBRARY_PATH=$SITE/nvidia/cu13/lib:$SITE/nvidia/cudnn/lib:$LD_LIBRARY_PATH',
    'Then `npx dino doctor` says whether the CUDA EP starts.',
  ];
}

export type CommandRunner = (cmd: string, args: string[], env: Record<string, string>) => Promise<number>;

const spawnRunner: CommandRunner = (cmd, args, env) =>
  new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { stdio: 'inherit', env: { ...process.env, ...env } });
    child.on('error', reject);
    child.on('exit', (code) => resolvePromise(code ?? 1));
  });

export interface SetupCudaOptions {
  /** Default {@link cudaDir}(). */
  readonly dir?: string;
  readonly log?: (line: string) => void;
  /** Runs `npm`; tests replace it. */
  readonly run?: CommandRunner;
  /** Whether the NVIDIA driver is present (default {@link nvidiaDriverFound}); tests replace it. */
  readonly driverFound?: () => boolean;
}

/**
 * Installs the pair with npm, copies the provider libraries into place and checks the versions.
 * @throws Error when npm fails or the check finds a problem (the problems and remedies in the message).
 */
export async function setupCuda(opts: SetupCudaOptions = {}): Promise<CudaCheck> {
  const dir = opts.dir ?? cudaDir();
  const log = opts.log ?? ((l: string) => process.stderr.write(l + '\n'));
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new Error(`setup cuda installs the Linux x64 CUDA build; this is ${process.platform}-${process.arch}. On Windows use ONNXRUNTIME_NODE_INSTALL (README "GPU").`);
  }
  mkdirSync(dir, { recursive: true });
  // A package.json of its own keeps npm from walking up into (and editing) the project's.
  const pkg = join(dir, 'package.json');
  if (!existsSync(pkg)) writeFileSync(pkg, JSON.stringify({ name: 'dino-cuda-runtime', private: true, description: 'written by dino setup cuda' }, null, 2) + '\n');
  if (!(opts.driverFound ?? nvidiaDriverFound)()) {
    // Installing still works (the folder can serve a GPU machine that shares it), but this machine cannot use it.
    log(`warning: ${nvidiaDriverAdvice().join(' ')} The CUDA provider will not start here; installing anyway.`);
  }
  const { args, env } = npmInstallArgs(dir);
  log(`installing onnxruntime-node@${CUDA_BUILD.ortVersion} and ${CUDA_BUILD.providerPackage}@${CUDA_BUILD.providerPackageVersion} into ${dir} ` +
    `(downloads ~${CUDA_SETUP_SIZE.downloadMb} MB from npm, ~${CUDA_SETUP_SIZE.diskGb} GB on disk)`);
  const code = await (opts.run ?? spawnRunner)('npm', args, env);
  if (code !== 0) throw new Error(`npm ${args.join(' ')} failed with exit code ${code}; check the registry is reachable (npm config get registry)`);
  for (const f of copyProviderLibs(dir)) log(`copied ${f}`);
  const check = await checkCudaLayout(dir);
  if (!check.ok) throw new Error(`the CUDA install in ${dir} is not usable:\n  ${check.problems.join('\n  ')}`);
  log(`ok: onnxruntime-node ${check.ortPackageVersion} with the CUDA provider of ORT ${check.providerVersions.join('/')}`);
  for (const line of cudaLibraryAdvice()) log(line);
  return check;
}
