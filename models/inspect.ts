/**
 * The parameter table of a preset: every parameter and buffer with its shape, element count and
 * weight-decay flag, with totals for backbone and head (`npx dino inspect --preset NAME [--json]`).
 */
import { type ParamSpec } from '../dsl/index.ts';
import { buildNetworkGraph, isHeadParam, paramSpecs } from './network.ts';
import { type Preset, getPreset } from './presets.ts';

export interface ParamRow {
  readonly name: string;
  readonly shape: readonly number[];
  readonly count: number;
  /** Weight decay applies (DINO: not to biases and 1-D parameters). */
  readonly decay: boolean;
  /** False for frozen parameters (`head.last_layer.weight_g` with norm_last_layer) and buffers. */
  readonly trainable: boolean;
  readonly kind: ParamSpec['kind'];
  readonly part: 'backbone' | 'head';
}

export interface ParamTable {
  readonly preset: string;
  readonly rows: readonly ParamRow[];
  /** Parameter elements (buffers such as BatchNorm running statistics excluded, frozen parameters included). */
  readonly backboneParams: number;
  readonly headParams: number;
}

export function rowsOf(specs: readonly ParamSpec[]): ParamRow[] {
  return specs.map((s) => ({
    name: s.name,
    shape: s.shape,
    count: s.shape.reduce((a, b) => a * b, 1),
    decay: s.decay,
    trainable: s.trainable,
    kind: s.kind,
    part: isHeadParam(s.name) ? 'head' : 'backbone',
  }));
}

/** The table of a named preset (throws for an unknown name, listing the known ones). */
export function parameterTable(presetName: string): ParamTable {
  return parameterTableOf(getPreset(presetName));
}

/** The table of a network given as a preset record (e.g. the model part of a training preset). */
export function parameterTableOf(preset: Preset): ParamTable {
  const rows = rowsOf(paramSpecs(buildNetworkGraph(preset)));
  const total = (part: ParamRow['part']) => rows.filter((r) => r.part === part && r.kind === 'param').reduce((n, r) => n + r.count, 0);
  return { preset: preset.name, rows, backboneParams: total('backbone'), headParams: total('head') };
}

const fmt = (n: number) => n.toLocaleString('en-US');

export function formatTable(t: ParamTable): string {
  const shapes = t.rows.map((r) => `[${r.shape.join(', ')}]`);
  const nameW = Math.max(4, ...t.rows.map((r) => r.name.length));
  const shapeW = Math.max(5, ...shapes.map((s) => s.length));
  const countW = Math.max(5, ...t.rows.map((r) => fmt(r.count).length));
  const flags = (r: ParamRow) => (r.kind !== 'param' ? r.kind : !r.trainable ? 'frozen' : r.decay ? 'decay' : '');
  const line = (a: string, b: string, c: string, d: string) => `${a.padEnd(nameW)}  ${b.padEnd(shapeW)}  ${c.padStart(countW)}  ${d}`.trimEnd();
  const out = [`preset ${t.preset}`, '', line('name', 'shape', 'count', 'flags')];
  t.rows.forEach((r, i) => out.push(line(r.name, shapes[i]!, fmt(r.count), flags(r))));
  const buffers = t.rows.filter((r) => r.kind === 'buffer').reduce((n, r) => n + r.count, 0);
  out.push('');
  out.push(`backbone parameters: ${fmt(t.backboneParams)}`);
  out.push(`head parameters:     ${fmt(t.headParams)}`);
  out.push(`total parameters:    ${fmt(t.backboneParams + t.headParams)}`);
  if (buffers) out.push(`buffers (not counted): ${fmt(buffers)}`);
  return out.join('\n');
}

export function tableJson(t: ParamTable): string {
  return JSON.stringify({
    preset: t.preset,
    backbone_params: t.backboneParams,
    head_params: t.headParams,
    params: t.rows.map((r) => ({ name: r.name, shape: r.shape, count: r.count, decay: r.decay, trainable: r.trainable, kind: r.kind })),
  });
}

/** `dino inspect --preset NAME [--json]`: the parameter table as text, or as one JSON object. */
export function inspectPreset(preset: string | Preset, json: boolean): string {
  const t = typeof preset === 'string' ? parameterTable(preset) : parameterTableOf(preset);
  return json ? tableJson(t) : formatTable(t);
}
