/**
 * Debian's headless Chromium as the project launches it (through playwright-core) for onnxruntime-web on WASM and on
 * WebGPU: the SwiftShader adapter gives CPU-only machines a WebGPU device (docs/ARCHITECTURE.md, "Browser WebGPU").
 * Used by the browser tests and tools/webgpu-step-probe.ts.
 */
export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_FLAGS = [
  '--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run',
  '--enable-unsafe-webgpu', '--enable-unsafe-swiftshader', '--use-webgpu-adapter=swiftshader',
];
