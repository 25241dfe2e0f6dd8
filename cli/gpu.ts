/** `dino setup cuda` and `dino doctor`: getting a GPU execution provider, and saying which ones start here. */
import { UsageError, defineCommand } from './args.ts';
import { CUDA_SETUP_SIZE } from '../runtime/ep/cuda-setup.ts';
import { EP_NAMES } from '../runtime/ep/records.ts';

export const setupCommand = defineCommand(
  {
    name: 'setup',
    summary: 'setup cuda: install the CUDA execution provider from the npm registry alone.',
    positionals: [{ name: 'TARGET', help: 'what to set up: cuda' }],
    options: { dir: { kind: 'string', placeholder: 'DIR', help: 'install folder (default .dino/cuda, or $DINO_CUDA_DIR)' } },
    epilog: `Installs onnxruntime-node 1.29.0 and the CUDA 13 provider libraries of the same ORT release (npm package
com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9; ~${CUDA_SETUP_SIZE.downloadMb} MB download, ~${CUDA_SETUP_SIZE.diskGb} GB on disk) into DIR, puts the provider
next to libonnxruntime.so.1, checks that the versions match, and prints the CUDA libraries still needed with the
LD_LIBRARY_PATH line. Afterwards --ep cuda uses that build. It warns first when the NVIDIA driver (libcuda.so.1)
is missing: the provider cannot start without it.`,
  },
  async ({ options: o, positionals }) => {
    if (positionals[0] !== 'cuda') throw new UsageError(`dino setup knows one target, "cuda"; got "${positionals[0]}"`, 'setup');
    const { setupCuda } = await import('../runtime/ep/cuda-setup.ts');
    await setupCuda({ ...(o.dir !== undefined ? { dir: o.dir } : {}), log: (l) => console.log(l) });
  },
);

export const doctorCommand = defineCommand(
  {
    name: 'doctor',
    summary: `Which execution providers (${EP_NAMES.join(', ')}) start here, and for each that does not, why and what to do; how the data pipeline decodes and augments here.`,
    options: { json: { kind: 'flag', help: 'print the results as JSON' } },
    epilog: 'Each provider opens and runs a one-node model in a child process.',
  },
  async ({ options: o }) => {
    const { doctor } = await import('../runtime/ep/doctor.ts');
    const report = await doctor();
    console.log(o.json ? JSON.stringify(report.results) : `${report.text}\n${(await dataPipelineReport()).join('\n')}`);
  },
);

/** What the loader's workers use here: the JPEG decoder and the augmentation kernels, with what would be faster. */
async function dataPipelineReport(): Promise<string[]> {
  const { turboJpegAvailable } = await import('../runtime/data/turbojpeg.ts');
  const { augmentKernels } = await import('../runtime/data/multicrop.ts');
  const jpeg = turboJpegAvailable()
    ? 'libjpeg-turbo on each worker thread (libturbojpeg.so.0)'
    : process.env['DINO_JPEG_DECODER'] === 'sharp'
      ? 'sharp (DINO_JPEG_DECODER=sharp)'
      : 'sharp, through libuv\'s thread pool; fix: apt-get install libturbojpeg0 (the same pixels, ~2.5x cheaper per JPEG)';
  const kernels = augmentKernels().name === 'wasm' ? 'WebAssembly SIMD' : 'JS (DINO_AUGMENT_KERNELS=js, or WebAssembly SIMD unavailable)';
  return [`data    JPEG decode: ${jpeg}`, `        augmentation kernels: ${kernels}`];
}
