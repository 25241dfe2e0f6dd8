/**
 * Does DINO's real training graph compile and run here? vit_small/16 at 224 px with K = 65536, batch 2, 2 global
 * + 2 local crops: build, emit, open an ORT session on the CPU and run one step from the initial state, with
 * DINO's schedules at step 0. Prints one JSON line (times, ONNX size, loss, peak RSS):
 *   node --import tsx bench/experiments/vit-small-step.ts [--emit-only]
 * and on a GPU (after `npx dino setup cuda`; DINO_EP=cuda loads that build, docs/ARCHITECTURE.md "GPU"):
 *   DINO_EP=cuda node --import tsx bench/experiments/vit-small-step.ts --ep cuda
 *   node --import tsx bench/experiments/vit-small-step.ts --ep webgpu
 * On a 2-core CPU the whole check takes seconds, not minutes (figures in bench/RESULTS.md, summary table), so
 * test/runtime/dino/vit-small-step.test.ts runs it too.
 */
import * as E from 'fp-ts/lib/Either.js';
import { formatError, Prng } from '../../dsl/index.ts';
import { buildDinoStep } from '../../models/dino-step.ts';
import { sampleDropPathMasks } from '../../models/vit.ts';
import { stepConfig, applyOverrides } from '../../runtime/dino/config.ts';
import { getPreset } from '../../runtime/dino/presets.ts';
import { stepScalars } from '../../runtime/dino/schedules.ts';
import { initialState } from '../../runtime/dino/train.ts';
import { StepRunner } from '../../runtime/step-runner.ts';
import { type ExecutionProvider, ort, ortChoice } from '../../runtime/backend.ts';
import { emitOnnx } from '../../dsl/onnx/emit.ts';
import { fileURLToPath } from 'node:url';

export async function vitSmallStep(emitOnly: boolean, ep: ExecutionProvider = 'cpu'): Promise<Record<string, unknown>> {
const cfg = applyOverrides(getPreset('vit_small'), ['batch=2', 'augment.localCrops=2']);
const t0 = performance.now();
const built = buildDinoStep({ ...stepConfig(cfg), recompute: 'mlp' });
if (E.isLeft(built)) throw new Error(built.left.map(formatError).join('\n'));
const tBuild = performance.now();
const result: Record<string, unknown> = { preset: cfg.preset, batch: cfg.batch, globalSize: cfg.augment.globalSize, localSize: cfg.augment.localSize, localCrops: cfg.augment.localCrops, outDim: cfg.head.outDim, nodes: built.right.graph.nodes.length, build_s: (tBuild - t0) / 1000 };
if (emitOnly) {
  const bytes = emitOnnx(built.right.graph, { params: 'inputs' });
  if (E.isLeft(bytes)) throw new Error(bytes.left.map(formatError).join('\n'));
  result['onnx_mb'] = bytes.right.length / 1e6;
  result['emit_s'] = (performance.now() - tBuild) / 1000;
} else {
  result['ep'] = ep;
  result['ort'] = ortChoice.module;
  const runner = await StepRunner.compile(built.right.graph, { ep, threads: 0, keepStateOnDevice: true });
  const tCompile = performance.now();
  result['onnx_mb'] = runner.onnxBytes.length / 1e6;
  result['compile_s'] = (tCompile - tBuild) / 1000;
  const state = initialState(runner.signature.state, 0);
  const b = cfg.batch, bb = cfg.backbone, a = cfg.augment;
  const prng = Prng.seeded(1);
  const noise = (n: number) => Float32Array.from({ length: n }, () => prng.normal());
  const feeds: Record<string, ort.Tensor> = {
    globals: new ort.Tensor('float32', noise(2 * b * 3 * a.globalSize ** 2), [2 * b, 3, a.globalSize, a.globalSize]),
    locals: new ort.Tensor('float32', noise(a.localCrops * b * 3 * a.localSize ** 2), [a.localCrops * b, 3, a.localSize, a.localSize]),
    'drop_path.globals': new ort.Tensor('float32', sampleDropPathMasks(prng, bb, 2 * b), [bb.depth, 2, 2 * b]),
    'drop_path.locals': new ort.Tensor('float32', sampleDropPathMasks(prng, bb, a.localCrops * b), [bb.depth, 2, a.localCrops * b]),
  };
  const metrics = await runner.run(state, feeds, stepScalars(cfg, 0));
  result['step_s'] = (performance.now() - tCompile) / 1000;
  result['loss'] = metrics['loss'];
  result['finite'] = Number.isFinite(metrics['loss']);
  await runner.release();
}
result['peak_rss_gib'] = process.resourceUsage().maxRSS / 2 ** 20;
return result;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const at = process.argv.indexOf('--ep');
  const ep = (at > 0 ? process.argv[at + 1] : 'cpu') as ExecutionProvider;
  console.log(JSON.stringify(await vitSmallStep(process.argv.includes('--emit-only'), ep)));
}
