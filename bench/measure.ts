/**
 * Timing, memory and machine facts shared by the benchmarks.
 *
 * Every timed loop also records the process's CPU time, so a report can tell a slow kernel from a machine
 * that is busy with other work: `cpuPerWall` near the thread count means the step had the cores to itself.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';

export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error('median of no samples');
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export interface Timing {
  /** Wall time of each measured repetition, ms. */
  readonly samplesMs: readonly number[];
  readonly medianMs: number;
  readonly minMs: number;
  /** Process CPU time (user + system, all threads) over wall time, for the measured repetitions. */
  readonly cpuPerWall: number;
}

/** Runs `fn` `warmup` times untimed, then `reps` times timed. */
export async function timeRepeated(fn: (rep: number) => Promise<unknown> | unknown, warmup: number, reps: number): Promise<Timing> {
  for (let i = 0; i < warmup; i++) await fn(-1 - i);
  const samplesMs: number[] = [];
  const cpu0 = process.cpuUsage();
  const wall0 = performance.now();
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn(i);
    samplesMs.push(performance.now() - t0);
  }
  const wallMs = performance.now() - wall0;
  const cpu = process.cpuUsage(cpu0);
  return { samplesMs, medianMs: median(samplesMs), minMs: Math.min(...samplesMs), cpuPerWall: (cpu.user + cpu.system) / 1000 / wallMs };
}

/** Peak resident set size of this process so far, MiB. */
export function peakRssMb(): number {
  return process.resourceUsage().maxRSS / 1024; // maxRSS is in KiB
}

export interface MachineInfo {
  readonly nproc: number;
  readonly cpuModel: string;
  readonly node: string;
  readonly onnxruntimeNode: string;
  readonly onnxruntimeWeb: string;
  /** 1-minute load average when the bench started: above nproc, other work shared the cores. */
  readonly loadAverage: number;
  readonly date: string;
}

/** A dependency's version, from the package.json above its entry point (some packages do not export it). */
function packageVersion(name: string): string {
  try {
    let dir = path.dirname(createRequire(import.meta.url).resolve(name));
    for (;;) {
      const file = path.join(dir, 'package.json');
      if (existsSync(file)) {
        const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
        if (pkg.name === name && pkg.version) return pkg.version;
      }
      const up = path.dirname(dir);
      if (up === dir) return 'unknown';
      dir = up;
    }
  } catch {
    return 'unknown';
  }
}

export function machineInfo(): MachineInfo {
  let cpuModel = os.cpus()[0]?.model ?? 'unknown';
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('model name'));
    if (line) cpuModel = line.split(':')[1]!.trim();
  } catch {
    // not Linux: os.cpus() it is
  }
  return {
    nproc: os.availableParallelism(),
    cpuModel,
    node: process.version,
    onnxruntimeNode: packageVersion('onnxruntime-node'),
    onnxruntimeWeb: packageVersion('onnxruntime-web'),
    loadAverage: os.loadavg()[0]!,
    date: new Date().toISOString(),
  };
}

/** Random float32 values in [-1, 1) (benchmark inputs; not the training PRNG). */
export function randomFloats(n: number, seed = 1): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = s / 2147483648 - 1;
  }
  return out;
}
