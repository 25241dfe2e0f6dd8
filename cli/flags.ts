/** Flag values checked and worded for the command line. */
import type { ExecutionProvider } from '../runtime/backend.ts';
import { RECOMPUTE_MODES, type Recompute } from '../models/vit.ts';

export function intArg(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${flag} must be a non-negative integer, got "${v}"`);
  return n;
}

const EPS: readonly ExecutionProvider[] = ['cpu', 'cuda', 'webgpu'];

export function epArg(v: string): ExecutionProvider {
  if (!(EPS as readonly string[]).includes(v)) throw new Error(`--ep must be cpu, cuda or webgpu, got "${v}"`);
  return v as ExecutionProvider;
}

export function recomputeArg(v: string): Recompute {
  if (!(RECOMPUTE_MODES as readonly string[]).includes(v)) throw new Error(`--recompute must be one of ${RECOMPUTE_MODES.join(', ')}, got "${v}"`);
  return v as Recompute;
}

export const log = (m: string) => process.stderr.write(m + '\n');
