/**
 * The DINO training step on onnxruntime-web's WebGPU EP in headless Chromium (SwiftShader: docs/ARCHITECTURE.md,
 * "Browser WebGPU"): every node placed on the WebGPU EP (ORT's own placement log) and the step's metrics equal
 * onnxruntime-node's CPU ones. (With ONNX LogSoftmax, which the WebGPU EP has no kernel for, the two loss nodes
 * fall back to the CPU: `node --import tsx tools/webgpu-step-probe.ts --log-softmax op` shows it.)
 * Skipped, with a message, when /usr/bin/chromium is absent.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import { CHROMIUM, SKIP_MESSAGE } from '../browser-harness.ts';
import { probeWebgpuStep } from '../../../tools/webgpu-step-probe.ts';

if (!fs.existsSync(CHROMIUM)) {
  test('WebGPU training step (skipped)', () => console.log(`    ${SKIP_MESSAGE}`));
} else {
  test('the DINO step runs wholly on WebGPU (composite log softmax) and matches the CPU', async () => {
    const r = await probeWebgpuStep({ depth: 1, logSoftmax: 'composite', log: 'verbose' });
    assert.ok(r.placement.some((l) => /All nodes placed on \[WebGpuExecutionProvider\]/.test(l)), r.placement.join('\n'));
    for (const [k, v] of Object.entries(r.cpu)) {
      const rel = Math.abs(r.webgpu[k]! - v) / Math.max(1e-6, Math.abs(v));
      console.log(`    ${k}: cpu ${v.toPrecision(8)}, webgpu ${r.webgpu[k]!.toPrecision(8)} (rel ${rel.toExponential(1)})`);
      assert.ok(rel < 1e-4, `${k}: ${r.webgpu[k]} vs ${v}`);
    }
  });
}

test.run();
