/**
 * Where a run's images came from, as `config.json` records it (key `data`), so evaluations can default to the run's
 * own data. Fashion-MNIST is the embedded default; an image folder is recorded with an absolute path (a relative one
 * would depend on the directory the evaluation is started from), and optionally a separate validation folder.
 */
import * as path from 'node:path';

export type DataSource =
  | { readonly kind: 'fmnist' }
  | {
      readonly kind: 'folder';
      /** The image folder training read. */
      readonly path: string;
      /** A folder of held-out images for evaluation; without it, the folder's own held-out split is used. */
      readonly val?: string;
      /**
       * The fraction of each class training held out of a plain folder (`--holdout F`, folder-index.ts): evaluation
       * scores those files. Absent: training used every image, and only `val` or a train/ + val/ layout gives a split.
       */
      readonly holdout?: number;
    };

/** The record for a run trained on `data` (a folder; absent = Fashion-MNIST), with an optional validation folder. */
export function dataSource(data?: string, val?: string): DataSource {
  if (data === undefined || data === 'fmnist' || data === 'fashion-mnist') {
    if (val !== undefined) throw new Error(`a validation folder (${val}) applies to image-folder data, not to Fashion-MNIST, which has its own test split`);
    return { kind: 'fmnist' };
  }
  return { kind: 'folder', path: path.resolve(data), ...(val !== undefined ? { val: path.resolve(val) } : {}) };
}

/**
 * Reads a recorded `data` value. Missing (config.json files written before runs recorded their data) means
 * Fashion-MNIST; a plain string is taken as a folder (or `fmnist`). Returns an error message for anything else.
 */
export function parseDataSource(raw: unknown): DataSource | string {
  if (raw === undefined || raw === null) return { kind: 'fmnist' };
  if (typeof raw === 'string') return raw === 'fmnist' || raw === 'fashion-mnist' ? { kind: 'fmnist' } : { kind: 'folder', path: raw };
  if (typeof raw === 'object' && !Array.isArray(raw)) {
    const r = raw as Record<string, unknown>;
    if (r['kind'] === 'fmnist') return { kind: 'fmnist' };
    if (r['kind'] === 'folder' && typeof r['path'] === 'string' && (r['val'] === undefined || typeof r['val'] === 'string') && (r['holdout'] === undefined || typeof r['holdout'] === 'number')) {
      return { kind: 'folder', path: r['path'], ...(typeof r['val'] === 'string' ? { val: r['val'] } : {}), ...(typeof r['holdout'] === 'number' ? { holdout: r['holdout'] } : {}) };
    }
  }
  return `"data" must be {"kind":"fmnist"} or {"kind":"folder","path":"...","val"?:"...","holdout"?:F}, got ${JSON.stringify(raw)}`;
}
