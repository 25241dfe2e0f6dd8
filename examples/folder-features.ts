// Features of an image folder through an exported teacher, one row per file, streamed to disk and resumable.
// Run: node --import tsx examples/folder-features.ts teacher.onnx ./my-images features.safetensors
import { extractFeatureFile, readFeatureFile } from 'dino-ts';

const [model, folder, out] = process.argv.slice(2);
if (!model || !folder || !out) throw new Error('usage: folder-features.ts MODEL.onnx FOLDER OUT.safetensors|OUT.npy');
await extractFeatureFile({ model, dataset: folder, out, split: 'all' });
const features = readFeatureFile(out);
console.log(`${features.count} rows of ${features.dim} (${features.info.splits.map((s) => `${s.name} ${s.count}`).join(', ')})`);
console.log(`row 0: ${features.files![0]}, class ${features.info.classes[features.labels[0]!]}`);
