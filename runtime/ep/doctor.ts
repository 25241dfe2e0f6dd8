/**
 * `dino doctor`: for each execution provider (runtime/ep/records.ts), whether it starts (a one-node model opened
 * with that EP alone and run, in the ONNX Runtime package its record names), and if not, why and what to do (the
 * record's remedy). Each EP is probed in a child process: the CUDA build of onnxruntime-node can only be loaded into
 * a process that has loaded no other (ep/ort-select.ts), and a native library that fails badly then takes down
 * only the probe.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as E from 'fp-ts/lib/Either.js';
import { Graph } from '../../dsl/graph.ts';
import { add } from '../../dsl/ops/elementwise.ts';
import { emitOnnx } from '../../dsl/onnx/emit.ts';
import { EP_NAMES, EP_RECORDS, type EpName, type RemedyContext } from './records.ts';
import { checkCudaLayout, cudaDir, nvidiaDriverFound } from './cuda-setup.ts';


/** What one probe found. */
export interface ProbeResult {
  readonly ep: EpName;
  readonly ok: boolean;
  /** Which onnxruntime-node ran the probe and its version. */
  readonly ort: string;
  /** ORT's error when the EP did not start. */
  readonly error?: string;
}

/** y = x + x on a [2] float32: every EP has a kernel for it, so a failure is the EP's, not the model's. */
export function probeModel(): Uint8Array {
  const g = new Graph('doctor_probe');
  const x = g.input('x', 'float32', [2]);
  g.output('y', add(x, x));
  const bytes = emitOnnx(g, { params: 'inputs' });
  if (E.isLeft(bytes)) throw new Error('the probe model does not emit');
  return bytes.right;
}

/**
 * Probes `ep` in this process with the ONNX Runtime its record names (for onnxruntime-node, the build this process
 * loaded): opens the probe model with that EP alone, runs it, and checks the answer.
 */
export async function probeHere(ep: EpName): Promise<ProbeResult> {
  const x = Float32Array.of(1.5, -2);
  let which = '?';
  try {
    let y: Float32Array;
    if (EP_RECORDS[ep].runtime === 'onnxruntime-web') {
      const { createWebSession, ortWeb } = await import('../web.ts');
      which = `onnxruntime-web ${ortWeb.env.versions.web ?? '?'}`;
      const session = await createWebSession(probeModel());
      y = (await session.run({ x: new ortWeb.Tensor('float32', x, [2]) }))['y']!.data as Float32Array;
      await session.release();
    } else {
      const { ort, ortChoice } = await import('../backend.ts');
      which = `${ortChoice.kind === 'default' ? 'onnxruntime-node' : `onnxruntime-node from ${ortChoice.module}`} ${ortVersion(ort)}`;
      const session = await ort.InferenceSession.create(probeModel(), { executionProviders: [ep], logSeverityLevel: 3 });
      y = (await session.run({ x: new ort.Tensor('float32', x, [2]) }))['y']!.data as Float32Array;
      await session.release();
    }
    if (y[0] !== 3 || y[1] !== -4) return { ep, ok: false, ort: which, error: `the probe computed [${[...y]}] instead of [3, -4]` };
    return { ep, ok: true, ort: which };
  } catch (e) {
    return { ep, ok: false, ort: which, error: (e as Error).message.split('\n')[0]! };
  }
}

function ortVersion(ort: unknown): string {
  return (ort as { env?: { versions?: { node?: string; common?: string } } }).env?.versions?.node ?? '?';
}

/** Runs {@link probeHere} in a child process with DINO_EP=`ep`, so `ep` gets the build it would get in training. */
export function probeInChild(ep: EpName, timeoutMs = 60_000): Promise<ProbeResult> {
  const script = fileURLToPath(import.meta.url);
  return new Promise((resolvePromise) => {
    // tsx by its resolved URL: the probe must work from any current directory.
    const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), script, '--probe', ep], {
      env: { ...process.env, DINO_EP: ep }, stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs,
    });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code, signal) => {
      const line = stdout.trim().split('\n').at(-1) ?? '';
      try {
        resolvePromise(JSON.parse(line) as ProbeResult);
      } catch {
        const why = signal ? `the probe was killed by ${signal}` : `the probe exited with code ${code}`;
        resolvePromise({ ep, ok: false, ort: '?', error: `${why}: ${stderr.trim().split('\n').slice(-3).join(' | ') || 'no output'}` });
      }
    });
  });
}

/**
 * The remedy for an EP that did not start: its record's, given what is installed (`ctx` defaults to this machine's:
 * the NVIDIA driver looked up, no CUDA build).
 */
export function remedyFor(ep: EpName, ctx: Partial<RemedyContext> = {}): readonly string[] {
  return EP_RECORDS[ep].remedy({
    error: ctx.error ?? '', cudaInstalled: ctx.cudaInstalled ?? false, cudaBuildLoaded: ctx.cudaBuildLoaded ?? false,
    nvidiaDriver: ctx.nvidiaDriver ?? (ep === 'cuda' ? nvidiaDriverFound() : true),
  });
}

export interface DoctorReport {
  readonly results: ProbeResult[];
  readonly text: string;
}

/** Probes every EP (in child processes) and formats the findings. */
export async function doctor(opts: {
  eps?: readonly EpName[]; probe?: (ep: EpName) => Promise<ProbeResult>; nvidiaDriver?: () => boolean;
} = {}): Promise<DoctorReport> {
  const probe = opts.probe ?? probeInChild;
  const results: ProbeResult[] = [];
  for (const ep of opts.eps ?? EP_NAMES) results.push(await probe(ep)); // one at a time: GPU drivers dislike concurrent first opens
  const cuda = await checkCudaLayout(cudaDir());
  const nvidiaDriver = (opts.nvidiaDriver ?? nvidiaDriverFound)();
  const lines: string[] = [];
  for (const r of results) {
    lines.push(`${r.ep.padEnd(7)} ${r.ok ? 'starts' : 'does not start'}  (${r.ort})`);
    if (!r.ok) {
      lines.push(`        why: ${r.error}`);
      const remedy = remedyFor(r.ep, { error: r.error ?? '', cudaInstalled: cuda.ok, cudaBuildLoaded: r.ort.includes(' from '), nvidiaDriver });
      for (const [i, l] of remedy.entries()) lines.push(`        ${i === 0 ? 'fix: ' : '     '}${l}`);
    }
  }
  const cudaState = cuda.ok
    ? `installed in ${cudaDir()} (ORT ${cuda.providerVersions.join('/')}), used by the CUDA provider`
    : cuda.ortPackageVersion === undefined ? `not installed (${cudaDir()})` : `broken: ${cuda.problems.join('; ')}`;
  lines.push(`setup cuda: ${cudaState}`);
  return { results, text: lines.join('\n') };
}

// `node --import tsx runtime/ep/doctor.ts --probe EP`: the child side of probeInChild, one JSON line on stdout.
if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === '--probe') {
  const ep = process.argv[3] as EpName;
  void probeHere(ep).then((r) => process.stdout.write(JSON.stringify(r) + '\n'));
}
