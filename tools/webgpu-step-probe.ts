/**
 * Which nodes of a DINO training step does ONNX Runtime's WebGPU execution provider leave to the CPU? Runs one step
 * of a small fmnist-tiny6-shaped step graph in headless Chromium (onnxruntime-web, WebGPU on SwiftShader: see
 * docs/ARCHITECTURE.md, "Browser WebGPU") with ORT's verbose log, prints the node placement it reports and the
 * step's metrics next to onnxruntime-node's on the CPU. onnxruntime-node's WebGPU EP needs a real GPU; the
 * browser's runs the same kernels' logic here, slowly.
 *
 *   node --import tsx tools/webgpu-step-probe.ts [--depth 2] [--out DIR] [--log verbose|info] [--log-softmax op|composite]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import * as E from 'fp-ts/lib/Either.js';
import { chromium } from 'playwright-core';
import { Prng, formatError } from '../dsl/index.ts';
import { emitOnnx } from '../dsl/onnx/emit.ts';
import { buildDinoStep } from '../models/dino-step.ts';
import { sampleDropPathMasks } from '../models/vit.ts';
import { applyOverrides, stepConfig } from '../runtime/dino/config.ts';
import { getPreset } from '../runtime/dino/presets.ts';
import { stepScalars } from '../runtime/dino/schedules.ts';
import { initialState } from '../runtime/dino/train.ts';
import { StepRunner } from '../runtime/step-runner.ts';
import { ort } from '../runtime/backend.ts';
import { EP_RECORDS } from '../runtime/ep/records.ts';
import { ortWebDist, startStaticServer } from '../exports/apps/serve.ts';

import { CHROMIUM, CHROMIUM_FLAGS } from './chromium.ts';

export interface ProbeOptions {
  readonly depth: number;
  /** `op` shows the fallback that `composite` (what dino train --ep webgpu builds) removes. */
  readonly logSoftmax: 'op' | 'composite';
  /** ORT-web's log level: `verbose` lists every node's placement. */
  readonly log: 'verbose' | 'info' | 'warning';
  readonly out?: string;
}

export interface ProbeResult {
  readonly nodes: number;
  readonly cpu: Record<string, number>;
  readonly webgpu: Record<string, number>;
  /** ORT's lines about node placement ("Node(s) placed on [...]", "All nodes placed on [...]"). */
  readonly placement: readonly string[];
  readonly logFile: string;
}

/** One step on onnxruntime-node's CPU EP and on onnxruntime-web's WebGPU EP in Chromium, with ORT's placement log. */
export async function probeWebgpuStep(o: ProbeOptions): Promise<ProbeResult> {
  const cfg = applyOverrides(getPreset('fmnist-tiny6'), [
    'batch=4', 'augment.localCrops=2', `backbone.depth=${o.depth}`, 'backbone.embedDim=48', 'backbone.numHeads=3', 'head.outDim=256', 'head.hiddenDim=64', 'head.bottleneckDim=32',
  ]);
  // `composite`: the WebGPU record's target, as dino train --ep webgpu lowers the step; `op`: the same without the
  // LogSoftmax lowering.
  const webgpu = EP_RECORDS.webgpu.target;
  const target = o.logSoftmax === 'composite' ? webgpu : { ...webgpu, missingOps: webgpu.missingOps.filter((op) => op !== 'LogSoftmax') };
  const built = buildDinoStep({ ...stepConfig(cfg), recompute: 'mlp' }, target);
  if (E.isLeft(built)) throw new Error(built.left.map(formatError).join('\n'));
  const bytes = emitOnnx(built.right.graph, { params: 'inputs' });
  if (E.isLeft(bytes)) throw new Error(bytes.left.map(formatError).join('\n'));

  // One step's inputs: the initial state, random crops, drop-path masks and the step-0 schedules.
  const runner = await StepRunner.compile(built.right.graph, { threads: 1 });
  const state = initialState(runner.signature.state, 0);
  const prng = Prng.seeded(1);
  const b = cfg.batch, bb = cfg.backbone, a = cfg.augment;
  const noise = (n: number) => Float32Array.from({ length: n }, () => prng.normal());
  const feeds: Record<string, { dims: number[]; data: number[] }> = {};
  const put = (name: string, data: Float32Array, dims: number[]) => (feeds[name] = { dims, data: Array.from(data) });
  put('globals', noise(2 * b * a.globalSize ** 2), [2 * b, 1, a.globalSize, a.globalSize]);
  put('locals', noise(a.localCrops * b * a.localSize ** 2), [a.localCrops * b, 1, a.localSize, a.localSize]);
  put('drop_path.globals', sampleDropPathMasks(prng, bb, 2 * b), [bb.depth, 2, 2 * b]);
  put('drop_path.locals', sampleDropPathMasks(prng, bb, a.localCrops * b), [bb.depth, 2, a.localCrops * b]);
  for (const spec of runner.signature.state) put(spec.name, state.get(spec.name).data as Float32Array, [...state.get(spec.name).dims]);
  for (const [name, v] of Object.entries(stepScalars(cfg, 0))) put(name, Float32Array.of(v), []);

  const nodeFeeds = Object.fromEntries(Object.entries(feeds).map(([k, f]) => [k, new ort.Tensor('float32', Float32Array.from(f.data), f.dims)]));
  const cpu = await runner.session.run(nodeFeeds);
  const metricNames = runner.signature.metrics.map((m) => `metric.${m}`);
  const cpuMetrics = Object.fromEntries(metricNames.map((m) => [m, Number(cpu[m]!.data[0])]));

  const dir = o.out ?? fs.mkdtempSync(path.join(os.tmpdir(), 'webgpu-step-'));
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'step.onnx'), bytes.right);
  fs.writeFileSync(path.join(dir, 'index.html'), `<!doctype html><meta charset="utf-8"><script type="module">
  import * as ort from '/ort/ort.webgpu.min.mjs';
  ort.env.wasm.wasmPaths = '/ort/';
  ort.env.logLevel = '${o.log}';
  window.probe = async (feeds, outputs) => {
    const session = await ort.InferenceSession.create('/step/step.onnx', { executionProviders: ['webgpu'], logSeverityLevel: 0, logVerbosityLevel: 0 });
    const inputs = Object.fromEntries(Object.entries(feeds).map(([k, f]) => [k, new ort.Tensor('float32', Float32Array.from(f.data), f.dims)]));
    const out = await session.run(inputs);
    return Object.fromEntries(outputs.map((m) => [m, Number(out[m].data[0])]));
  };
  </script>`);
  const server = await startStaticServer({ mounts: { '/ort/': ortWebDist(), '/step/': dir, '/': dir }, port: 0 });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS });
  const lines: string[] = [];
  try {
    const page = await browser.newPage();
    page.on('console', (m) => lines.push(m.text()));
    await page.goto(`${server.url}/index.html`);
    await page.waitForFunction(() => (window as any).probe !== undefined);
    const webgpu = await page.evaluate(async ([f, o]) => (window as any).probe(f, o), [feeds, metricNames] as const);
    const logFile = path.join(dir, 'ort-log.txt');
    fs.writeFileSync(logFile, lines.join('\n'));
    // The placement summary lines, and under "Node(s) placed on [CPUExecutionProvider]" the nodes it lists.
    const placement: string[] = [];
    let onCpu = false;
    for (const l of lines) {
      if (/placed on \[/.test(l)) {
        placement.push(l);
        onCpu = /Node\(s\) placed on \[CPUExecutionProvider\]/.test(l);
      } else if (onCpu && /VerifyEachNodeIsAssignedToAnEp\]\s{3}/.test(l)) placement.push(l);
    }
    return { nodes: built.right.graph.nodes.length, cpu: cpuMetrics, webgpu, placement, logFile };
  } finally {
    await browser.close();
    await server.close();
    await runner.release();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { depth: { type: 'string', default: '2' }, out: { type: 'string' }, log: { type: 'string', default: 'verbose' }, 'log-softmax': { type: 'string', default: 'composite' } } });
  const r = await probeWebgpuStep({
    depth: Number(values.depth), logSoftmax: values['log-softmax'] === 'op' ? 'op' : 'composite',
    log: values.log as ProbeOptions['log'], ...(values.out ? { out: values.out } : {}),
  });
  console.log(JSON.stringify({ nodes: r.nodes, cpu: r.cpu, webgpu: r.webgpu }, null, 1));
  console.log(`placement (${r.logFile}):`);
  for (const l of r.placement) console.log(`  ${l.replace(/^.*VerifyEachNodeIsAssignedToAnEp\]/, '').trimEnd()}`);
}
