// The browser demo: onnxruntime-web runs the exported teacher (WebGPU when the browser has an adapter, else
// WASM); attention maps and nearest neighbours are computed here. Served by exports/apps/serve.ts.
import * as ort from '/ort/ort.webgpu.min.mjs';

const params = new URLSearchParams(location.search);
ort.env.wasm.wasmPaths = '/ort/';
ort.env.wasm.numThreads = Number(params.get('threads') ?? (self.crossOriginIsolated ? 2 : 1));
ort.env.logLevel = 'error';

const $ = (id) => document.getElementById(id);
const state = { session: null, meta: null, gallery: null, pixels: null, ep: null };
const setStatus = (text, kind) => {
  $('status').textContent = text;
  if (kind) document.body.dataset.state = kind;
};

/** WebGPU when asked for or available, else WASM. */
async function pickEp() {
  const wanted = params.get('ep');
  if (wanted === 'wasm' || wanted === 'webgpu') return wanted;
  try {
    if (navigator.gpu && (await navigator.gpu.requestAdapter())) return 'webgpu';
  } catch { /* no adapter */ }
  return 'wasm';
}

async function fetchOk(url, how) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return how === 'json' ? r.json() : r.arrayBuffer();
}

async function init() {
  // ?model=NAME.onnx loads another model from /data/ (same gallery), e.g. a dynamic-size export
  const modelName = /^[\w.-]+\.onnx$/.test(params.get('model') ?? '') ? params.get('model') : 'model.onnx';
  const [meta, features, pixels, model] = await Promise.all([
    fetchOk('/data/gallery.json', 'json'), fetchOk('/data/gallery-features.bin'), fetchOk('/data/gallery-pixels.bin'), fetchOk(`/data/${modelName}`),
  ]);
  state.meta = meta;
  state.gallery = new Float32Array(features);
  state.pixels = new Uint8Array(pixels);
  state.ep = await pickEp();
  try {
    state.session = await ort.InferenceSession.create(model, { executionProviders: [state.ep] });
  } catch (e) {
    if (state.ep === 'wasm' || params.get('ep') === 'webgpu') throw e;
    console.warn(`WebGPU failed (${e.message}); using WASM`);
    state.ep = 'wasm';
    state.session = await ort.InferenceSession.create(model, { executionProviders: ['wasm'] });
  }
  $('about').textContent = `onnxruntime-web ${ort.env.versions?.web ?? ''}, execution provider: ${state.ep}; gallery: ${meta.count} ${meta.dataset} train images`;
  showSamples(8);
  setStatus(`Ready (${state.ep.toUpperCase()}). Pick an image.`, 'ready');
}

/** A few gallery images, evenly spaced, to try without an upload: a click analyses that image. */
function showSamples(n) {
  const box = $('samples');
  const count = Math.min(n, state.meta.count);
  for (let k = 0; k < count; k++) {
    const index = Math.floor((k * state.meta.count) / count);
    const canvas = thumbnail(index);
    canvas.dataset.index = String(index);
    canvas.title = state.meta.classes[state.meta.labels[index]] ?? `image ${index}`;
    canvas.addEventListener('click', () => canvas.toBlob((blob) => analyze(blob).catch(fail), 'image/png'));
    box.append(canvas);
  }
  $('samples-box').hidden = count === 0;
}

/** The model's input size for an image of w x h. */
function inputSize(w, h) {
  if (state.meta.modelSize) return state.meta.modelSize;
  const p = state.meta.patchSize;
  const s = Math.min(1, 448 / Math.max(w, h));
  return [Math.max(p, Math.floor((h * s) / p) * p), Math.max(p, Math.floor((w * s) / p) * p)];
}

/** Draws the bitmap cover-cropped to H x W and returns [C, H, W] floats in [0, 1] plus the RGBA pixels. */
function toInput(bitmap) {
  const [H, W] = inputSize(bitmap.width, bitmap.height);
  const canvas = $('input');
  canvas.width = W;
  canvas.height = H;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const scale = Math.max(W / bitmap.width, H / bitmap.height);
  const sw = W / scale, sh = H / scale;
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(bitmap, (bitmap.width - sw) / 2, (bitmap.height - sh) / 2, sw, sh, 0, 0, W, H);
  const rgba = ctx.getImageData(0, 0, W, H).data;
  const C = state.meta.modelChannels, plane = H * W, data = new Float32Array(C * plane);
  for (let p = 0; p < plane; p++) {
    const r = rgba[4 * p] / 255, g = rgba[4 * p + 1] / 255, b = rgba[4 * p + 2] / 255;
    if (C === 1) data[p] = 0.299 * r + 0.587 * g + 0.114 * b;
    else { data[p] = r; data[plane + p] = g; data[2 * plane + p] = b; }
  }
  return { data, C, H, W, rgba };
}

/** Runs the model on [N, C, H, W] floats; returns plain arrays (used by the page and by tests). */
async function runRaw(data, dims) {
  const out = await state.session.run({ images: new ort.Tensor('float32', data instanceof Float32Array ? data : Float32Array.from(data), dims) });
  return { features: Array.from(out.features.data), cls_attention: Array.from(out.cls_attention.data), dims: { features: out.features.dims, cls_attention: out.cls_attention.dims } };
}

/** DINO's mask: the largest values holding `threshold` of the mass (ascending sort, cumulative sum > 1 - threshold). */
function attentionMask(a, threshold = 0.6) {
  const total = a.reduce((s, v) => s + v, 0);
  const order = a.map((_, i) => i).sort((i, j) => a[i] - a[j] || i - j);
  const mask = new Uint8Array(a.length);
  let cum = 0;
  for (const i of order) { cum += a[i] / total; if (cum > 1 - threshold) mask[i] = 1; }
  return mask;
}

const VIRIDIS = [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141], [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]];
function viridis(v) {
  const x = Math.min(Math.max(v, 0), 1) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(x), VIRIDIS.length - 2), t = x - i;
  return VIRIDIS[i].map((a, c) => a + (VIRIDIS[i + 1][c] - a) * t);
}

/** One head: attention overlay and its 60% mask, drawn at the model's resolution (CSS scales them up). */
function drawHead(input, att, rows, cols, head) {
  const { W, H, rgba } = input;
  const min = Math.min(...att), range = Math.max(Math.max(...att) - min, 1e-12);
  const mask = attentionMask(att);
  const fig = document.createElement('figure');
  fig.className = 'head';
  for (const kind of ['attention', 'mask']) {
    const canvas = document.createElement('canvas');
    canvas.width = W;
    canvas.height = H;
    canvas.dataset.kind = kind;
    const ctx = canvas.getContext('2d');
    const img = ctx.createImageData(W, H);
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
      const patch = Math.floor((y * rows) / H) * cols + Math.floor((x * cols) / W), o = 4 * (y * W + x);
      for (let c = 0; c < 3; c++) {
        const base = rgba[o + c];
        img.data[o + c] = kind === 'attention' ? 0.4 * base + 0.6 * viridis((att[patch] - min) / range)[c] : mask[patch] ? 0.65 * base + 0.35 * [255, 140, 0][c] : 0.25 * base;
      }
      img.data[o + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
    fig.append(canvas);
  }
  const kept = att.reduce((s, v, i) => s + (mask[i] ? v : 0), 0) / att.reduce((s, v) => s + v, 0);
  const cap = document.createElement('figcaption');
  cap.textContent = `head ${head} · mask keeps ${(100 * kept).toFixed(0)}%`;
  fig.append(cap);
  return { fig, kept };
}

/** The k most similar gallery images (cosine on L2-normalised features), by partial selection. */
function nearest(feature, k) {
  const { dim, count } = state.meta;
  let norm = 0;
  for (const v of feature) norm += v * v;
  norm = Math.sqrt(norm) || 1;
  const best = [];
  for (let i = 0; i < count; i++) {
    let s = 0;
    for (let j = 0; j < dim; j++) s += state.gallery[i * dim + j] * feature[j];
    s /= norm;
    if (best.length < k || s > best[best.length - 1][0]) {
      best.push([s, i]);
      best.sort((a, b) => b[0] - a[0]);
      if (best.length > k) best.pop();
    }
  }
  return best.map(([similarity, index]) => ({ index, similarity, label: state.meta.labels[index], className: state.meta.classes[state.meta.labels[index]] ?? String(state.meta.labels[index]) }));
}

function thumbnail(index) {
  const { channels: C, height: H, width: W } = state.meta;
  const canvas = document.createElement('canvas');
  canvas.width = W;
  canvas.height = H;
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(W, H), base = index * C * H * W;
  for (let p = 0; p < H * W; p++) {
    for (let c = 0; c < 3; c++) img.data[4 * p + c] = state.pixels[base + (C === 1 ? 0 : c) * H * W + p];
    img.data[4 * p + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  return canvas;
}

async function analyze(blob) {
  document.body.dataset.state = 'running';
  setStatus('Running the model…');
  const t0 = performance.now();
  const bitmap = await createImageBitmap(blob);
  const input = toInput(bitmap);
  const out = await runRaw(input.data, [1, input.C, input.H, input.W]);
  const ms = performance.now() - t0;
  const p = state.meta.patchSize, rows = input.H / p, cols = input.W / p, n = rows * cols;
  const heads = $('heads');
  heads.replaceChildren();
  const kept = [];
  for (let h = 0; h < state.meta.numHeads; h++) {
    const drawn = drawHead(input, out.cls_attention.slice(h * n, (h + 1) * n), rows, cols, h);
    heads.append(drawn.fig);
    kept.push(drawn.kept);
  }
  const neighbours = nearest(out.features, 20);
  const votes = new Map();
  for (const nb of neighbours) votes.set(nb.label, (votes.get(nb.label) ?? 0) + Math.exp(nb.similarity / 0.07));
  const predicted = [...votes].sort((a, b) => b[1] - a[1])[0][0];
  const list = $('neighbours');
  list.replaceChildren();
  for (const nb of neighbours.slice(0, 10)) {
    const fig = document.createElement('figure');
    const cap = document.createElement('figcaption');
    cap.textContent = `${nb.className} · ${nb.similarity.toFixed(3)}`;
    fig.append(thumbnail(nb.index), cap);
    list.append(fig);
  }
  const className = state.meta.classes[predicted] ?? String(predicted);
  $('prediction').innerHTML = '';
  $('prediction').append('k-NN (k = 20) says: ', Object.assign(document.createElement('b'), { textContent: className }));
  $('result').hidden = false;
  window.__lastResult = { ep: state.ep, features: out.features, neighbours, predicted: { label: predicted, className }, kept, ms, size: [input.H, input.W] };
  setStatus(`Done in ${ms.toFixed(0)} ms (${state.ep.toUpperCase()}).`, 'done');
  return window.__lastResult;
}

const drop = $('drop');
$('file').addEventListener('change', (e) => {
  const f = e.target.files?.[0];
  if (f) analyze(f).catch(fail);
});
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  const f = e.dataTransfer?.files?.[0];
  if (f) analyze(f).catch(fail);
});

function fail(e) {
  console.error(e);
  setStatus(`Error: ${e.message}`, 'error');
  window.__lastError = e.message;
}

const ready = init().catch((e) => { fail(e); throw e; });
window.dinoDemo = { ready, analyze, runRaw, get ep() { return state.ep; } };
