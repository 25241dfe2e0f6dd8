import type { Graph } from '../dsl/index.ts';
import type { ViTConfig } from '../models/vit.ts';
export function buildDynamicTeacherGraph(_cfg: ViTConfig, _opts: { mean: readonly number[]; std: readonly number[] }): Graph {
  throw new Error('dynamic-size export is not implemented yet');
}
