/** The commands that take a trained model out: `dino export|knn|linear|attention|serve|report`. */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { attentionMaps, exportTeacher, knnEvaluate, linearProbe, serve, writeReport } from '../exports/index.ts';
import { runModel } from '../exports/knn.ts';
import { intArg, log } from './flags.ts';

export async function exportCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      run: { type: 'string' }, student: { type: 'boolean' }, preset: { type: 'string' }, weights: { type: 'string' },
      out: { type: 'string' }, 'image-size': { type: 'string' }, help: { type: 'boolean' },
    },
  });
  if (values.help) {
    return void console.log(`usage: dino export (--run DIR [--student] | --preset NAME --weights FILE.safetensors|FILE.pth) [--out FILE.onnx] [--image-size N]

  The model takes images [N, C, H, W] in [0, 1] and returns features [N, D], patch_tokens [N, P, D] and
  cls_attention [N, heads, P]. Without --image-size, H and W may be any multiple of the patch size.`);
  }
  const out = values.out ?? (values.run ? join(values.run, values.student ? 'student.onnx' : 'teacher.onnx') : undefined);
  if (!out) throw new Error('--out FILE.onnx is required with --preset/--weights');
  const r = exportTeacher({
    out,
    ...(values.run ? { run: values.run } : {}), ...(values.student ? { student: true } : {}),
    ...(values.preset ? { preset: values.preset } : {}), ...(values.weights ? { weights: values.weights } : {}),
    ...(values['image-size'] ? { imageSize: intArg('--image-size', values['image-size']) } : {}),
  });
  console.log(`wrote ${r.out} (${(r.bytes / 1e6).toFixed(1)} MB) in ${r.seconds.toFixed(1)} s`);
}

export async function knnCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      run: { type: 'string' }, model: { type: 'string' }, dataset: { type: 'string', default: 'fmnist' }, data: { type: 'string' },
      json: { type: 'boolean' }, 'limit-train': { type: 'string' }, 'limit-test': { type: 'string' }, help: { type: 'boolean' },
    },
  });
  if (values.help) return void console.log('usage: dino knn (--run DIR | --model FILE.onnx) [--dataset fmnist | --data FOLDER] [--limit-train N] [--limit-test N] [--json]');
  const r = await knnEvaluate({
    ...(values.run ? { run: values.run } : {}), ...(values.model ? { model: values.model } : {}),
    dataset: values.data ?? values.dataset!, log,
    ...(values['limit-train'] ? { limitTrain: intArg('--limit-train', values['limit-train']) } : {}),
    ...(values['limit-test'] ? { limitTest: intArg('--limit-test', values['limit-test']) } : {}),
  });
  console.log(values.json ? r.json : r.table);
}

export async function linearCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      run: { type: 'string' }, model: { type: 'string' }, dataset: { type: 'string', default: 'fmnist' }, data: { type: 'string' },
      epochs: { type: 'string' }, json: { type: 'boolean' }, 'limit-train': { type: 'string' }, 'limit-test': { type: 'string' }, help: { type: 'boolean' },
    },
  });
  if (values.help) return void console.log('usage: dino linear (--run DIR | --model FILE.onnx) [--dataset fmnist | --data FOLDER] [--epochs N] [--json]');
  const r = await linearProbe({
    ...(values.run ? { run: values.run } : {}), ...(values.model ? { model: values.model } : {}),
    dataset: values.data ?? values.dataset!, log,
    ...(values.epochs ? { epochs: intArg('--epochs', values.epochs) } : {}),
    ...(values['limit-train'] ? { limitTrain: intArg('--limit-train', values['limit-train']) } : {}),
    ...(values['limit-test'] ? { limitTest: intArg('--limit-test', values['limit-test']) } : {}),
  });
  console.log(values.json ? r.json : r.summary);
}

export async function attentionCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: { model: { type: 'string' }, run: { type: 'string' }, out: { type: 'string', default: 'attention' }, threshold: { type: 'string' }, help: { type: 'boolean' } },
  });
  if (values.help || positionals.length !== 1) return void console.log('usage: dino attention IMAGE (--model FILE.onnx | --run DIR) [--out DIR] [--threshold 0.6]');
  const model = runModel({ ...(values.run ? { run: values.run } : {}), ...(values.model ? { model: values.model } : {}), log });
  const r = await attentionMaps({ image: positionals[0]!, model, out: values.out!, ...(values.threshold ? { threshold: Number(values.threshold) } : {}) });
  console.log(r.files.join('\n'));
}

export async function serveCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { run: { type: 'string' }, model: { type: 'string' }, dataset: { type: 'string', default: 'fmnist' }, port: { type: 'string' }, help: { type: 'boolean' } },
  });
  if (values.help) return void console.log('usage: dino serve (--run DIR | --model FILE.onnx) [--dataset fmnist | FOLDER] [--port N]');
  const s = await serve({
    ...(values.run ? { run: values.run } : {}), ...(values.model ? { model: values.model } : {}),
    dataset: values.dataset!, log, ...(values.port ? { port: intArg('--port', values.port) } : {}),
  });
  console.log(`serving on ${s.url} (Ctrl-C to stop)`);
}

export async function reportCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { run: { type: 'string' }, help: { type: 'boolean' } } });
  if (values.help || !values.run) return void console.log('usage: dino report --run DIR');
  console.log(await writeReport({ run: values.run, log }));
}
