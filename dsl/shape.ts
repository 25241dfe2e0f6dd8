/**
 * Shapes with static sizes and named symbolic dimensions.
 *
 * A dimension is a number (static) or a string naming a symbolic size (`'batch'`). Products of
 * dimensions stay symbolic as a canonical string (`'50*batch'`), so `reshape([batch, 50, 192] -> [-1, 192])`
 * can name its result `[50*batch, 192]` and reshape back.
 */
export type Dim = number | string;
export type Shape = readonly Dim[];

export const isStatic = (d: Dim): d is number => typeof d === 'number';

/** Splits a symbolic dim into its numeric coefficient and sorted symbol factors. */
function factors(d: Dim): { coef: number; syms: string[] } {
  if (typeof d === 'number') return { coef: d, syms: [] };
  let coef = 1;
  const syms: string[] = [];
  for (const part of d.split('*')) {
    const n = Number(part);
    if (part !== '' && Number.isFinite(n)) coef *= n;
    else syms.push(part);
  }
  return { coef, syms: syms.sort() };
}

function fromFactors(coef: number, syms: string[]): Dim {
  if (syms.length === 0) return coef;
  const s = [...syms].sort().join('*');
  return coef === 1 ? s : `${coef}*${s}`;
}

export function mulDims(a: Dim, b: Dim): Dim {
  const fa = factors(a), fb = factors(b);
  return fromFactors(fa.coef * fb.coef, [...fa.syms, ...fb.syms]);
}

/** a / b when it is exact, otherwise undefined. */
export function divDims(a: Dim, b: Dim): Dim | undefined {
  const fa = factors(a), fb = factors(b);
  if (fb.coef === 0 || fa.coef % fb.coef !== 0) return undefined;
  const syms = [...fa.syms];
  for (const s of fb.syms) {
    const i = syms.indexOf(s);
    if (i < 0) return undefined;
    syms.splice(i, 1);
  }
  return fromFactors(fa.coef / fb.coef, syms);
}

export function dimEq(a: Dim, b: Dim): boolean {
  return typeof a === typeof b ? a === b : false;
}

export function shapeEq(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => dimEq(d, b[i]!));
}

export function numel(shape: Shape): Dim {
  return shape.reduce<Dim>((acc, d) => mulDims(acc, d), 1);
}

/** Number of elements of a fully static shape; throws on a symbolic one. */
export function staticNumel(shape: Shape): number {
  const n = numel(shape);
  if (typeof n !== 'number') throw new Error(`shape ${formatShape(shape)} is not static`);
  return n;
}

export function formatShape(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

/** Numpy-style broadcast of two shapes, or an error message. */
export function broadcastShapes(a: Shape, b: Shape): Shape | string {
  const rank = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (dimEq(da, db) || db === 1) out.push(da);
    else if (da === 1) out.push(db);
    else return `cannot broadcast ${formatShape(a)} with ${formatShape(b)} (dim ${i}: ${da} vs ${db})`;
  }
  return out;
}

/** Normalises a possibly negative axis for a tensor of the given rank, or returns undefined if out of range. */
export function normAxis(axis: number, rank: number): number | undefined {
  const a = axis < 0 ? axis + rank : axis;
  return a >= 0 && a < rank ? a : undefined;
}

// ---- symbolic image sizes ------------------------------------------------------------------------
// An image of symbolic size H x W cut into p x p patches has a patch grid of `H/p` x `W/p` (a symbol of its
// own: the op that makes it states that p divides H), and a ViT's token axis is `1+H/p*W/p` (Concat's name for
// a static part followed by a symbolic one). These helpers keep such dims checkable without a general algebra.

/** Slice end meaning "to the end of the axis" (ONNX clamps it), usable on symbolic axes. */
export const TO_END = 2 ** 62;

/**
 * `d / k` for a patch count: exact for static dims (undefined if k does not divide d), an exact symbolic
 * quotient where there is one (`8*x` / 4 = `2*x`), else the symbol `d/k` for a plain symbol d (`H` / 16 = `H/16`).
 */
export function quotientDim(d: Dim, k: number): Dim | undefined {
  if (!Number.isInteger(k) || k < 1) return undefined;
  if (typeof d === 'number') return d % k === 0 ? d / k : undefined;
  if (k === 1) return d;
  const exact = divDims(d, k);
  if (exact !== undefined) return exact;
  return /^[A-Za-z_][\w.]*$/.test(d) ? `${d}/${k}` : undefined;
}

/**
 * The size of `[start:end]` of a symbolic axis named `c+rest` (static part c, as Concat names an axis whose
 * first parts are static): `[0:j]` with j <= c is j; `[i:TO_END]` with i <= c is `(c-i)+rest`. Undefined otherwise
 * (the size would depend on the runtime value).
 */
export function sliceSymbolicDim(d: string, start: number, end: number): Dim | undefined {
  const plus = d.indexOf('+');
  const head = plus > 0 ? Number(d.slice(0, plus)) : NaN;
  if (!Number.isInteger(head) || head < 0 || start < 0) return undefined;
  if (end >= TO_END && start <= head) return start === head ? d.slice(plus + 1) : `${head - start}+${d.slice(plus + 1)}`;
  if (end <= head && start < end) return end - start;
  return undefined;
}
