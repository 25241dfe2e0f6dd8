/**
 * A transformers.js user's program, run by test/exports/export/hf.test.ts in a child process: it loads a folder written by
 * `dino export --format hf` with `@huggingface/transformers` offline (remote models off, the folder as a local model)
 * and writes what AutoProcessor + AutoModel and pipeline('image-feature-extraction') return for some image files.
 *
 * A child process because transformers.js loads its own onnxruntime-node dependency: today npm dedupes it with the
 * project's, but a second onnxruntime-node in one process would get the first one's native library
 * (docs/ARCHITECTURE.md, "GPU"), so the test keeps the two apart whatever versions are installed.
 *
 * Usage: node --import tsx test/exports/export/hf-client.ts MODEL_FOLDER OUT.json IMAGE...
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AutoModel, AutoProcessor, RawImage, type Tensor, env, pipeline } from '@huggingface/transformers';

const [folder, outFile, ...imageFiles] = process.argv.slice(2);
if (!folder || !outFile || imageFiles.length === 0) throw new Error('usage: hf-client.ts MODEL_FOLDER OUT.json IMAGE...');

env.allowRemoteModels = false;
env.allowLocalModels = true;
env.localModelPath = path.dirname(path.resolve(folder)) + path.sep;
const modelId = path.basename(folder);

const plain = (t: Tensor) => ({ dims: [...t.dims], data: Array.from(t.data as Float32Array) });

const processor = await AutoProcessor.from_pretrained(modelId);
const model = await AutoModel.from_pretrained(modelId);
const images = await Promise.all(imageFiles.map((f) => RawImage.read(f)));
const inputs = await processor(images);
const outputs = await model(inputs);

const extractor = await pipeline('image-feature-extraction', modelId);
const hidden = await extractor(imageFiles);
const pooled = await extractor(imageFiles, { pool: true });

fs.writeFileSync(outFile, JSON.stringify({
  modelClass: model.constructor.name,
  processorClass: processor.constructor.name,
  pixel_values: plain(inputs.pixel_values),
  last_hidden_state: plain(outputs.last_hidden_state),
  pooler_output: plain(outputs.pooler_output),
  cls_attention: plain(outputs.cls_attention),
  pipeline: plain(hidden),
  pipeline_pooled: plain(pooled),
}));
await model.dispose();
await extractor.dispose();
