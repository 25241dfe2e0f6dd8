/** Every op's gradient-check case, keyed by op name. Add a file per op family and merge it here. */
import type { GradCheckSpec } from '../../helpers/gradcheck.ts';
import { convCases } from './conv.ts';
import { elementwiseCases } from './elementwise.ts';
import { gatherCases } from './gather.ts';
import { layoutCases } from './layout.ts';
import { nnCases } from './nn.ts';
import { normCases } from './norm.ts';
import { reduceCases } from './reduce.ts';

export const gradCases: Record<string, GradCheckSpec> = {
  ...elementwiseCases,
  ...reduceCases,
  ...layoutCases,
  ...nnCases,
  ...convCases,
  ...gatherCases,
  ...normCases,
};
