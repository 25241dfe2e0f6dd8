/** The commands that take a trained model out: `dino export|knn|linear|attention|serve|report`. */
import { extname, join } from 'node:path';
import { attentionMaps, exportTeacher, knnEvaluate, linearProbe, serve, writeReport } from '../exports/index.ts';
import { extractFeatureFile } from '../exports/evaluation/features.ts';
import { runModel } from '../exports/evaluation/run-model.ts';
import { EXECUTION_PROVIDERS } from '../runtime/ep/records.ts';
import { checkpointPath, readRunConfig } from '../exports/export/teacher.ts';
import { exportBackbone } from '../exports/export/backbone.ts';
import { RunFolder } from '../runtime/dino/run-folder.ts';
import { pytorchLoadLines, weightFormatFor, writeTeacherWeights, writeWeights } from '../exports/export/weights.ts';
import { exportHf } from '../exports/export/hf.ts';
import { readDinoWeights } from '../runtime/io/weights.ts';
import { UsageError, defineCommand } from './args.ts';
import { abortOnUncaughtError, openCollective } from '../runtime/dist/collective.ts';

const log = (m: string) => process.stderr.write(m + '\n');

/** `--run DIR` or `--model FILE.onnx`: exactly one names the model to evaluate. */
function modelSource(name: string, o: { run?: string | undefined; model?: string | undefined }): { run: string } | { model: string } {
  if (o.run !== undefined && o.model !== undefined) throw new UsageError('--run and --model both name the model: give one', name);
  if (o.run !== undefined) {
    runBackboneKind(name, o.run);
    return { run: o.run };
  }
  if (o.model !== undefined) return { model: o.model };
  throw new UsageError('name the model: --run DIR (a training run) or --model FILE.onnx (an exported model)', name);
}

/**
 * The backbone kind of the run in `run` (undefined when the folder holds no run: the command's own checks say so).
 * A registered backbone's run is refused: its backbone is code in the user's program, which the CLI cannot import.
 */
function runBackboneKind(command: string, run: string): string | undefined {
  const folder = new RunFolder(run);
  if (!folder.hasConfig() && !folder.hasCheckpoint()) return undefined;
  const backbone = folder.readConfig().backbone;
  if (backbone.kind === 'custom') {
    throw new UsageError(`--run ${run} trains the registered backbone "${backbone.name}", code of your program that the CLI cannot import: ` +
      `export it from your script (registerBackbone, then exportBackbone({ config, checkpoint, out: 'teacher.onnx' })) and give the CLI --model teacher.onnx (README, "Your own backbone, from a script")`, command);
  }
  return backbone.kind;
}

/**
 * Refuses a run whose backbone is not a ViT (a ResNet, a registered backbone) for `command`, which needs what only a
 * ViT has ([CLS] attention and intermediate [CLS], patch tokens), naming what works on it.
 */
function requireViTRun(command: string, run: string | undefined): void {
  const kind = run !== undefined ? runBackboneKind(command, run) : undefined;
  if (kind !== undefined && kind !== 'vit') {
    throw new UsageError(`--run ${run} trains a ${kind} backbone; ${command} needs a ViT's [CLS] attention, patch tokens or [CLS] of each block. ` +
      `Its features work: dino export --run ${run} (a features model), dino features --run ${run} --out F.safetensors, dino knn --run ${run}, dino linear --features F.safetensors`, command);
  }
}

const MODEL_OPTIONS = {
  run: { kind: 'string', placeholder: 'DIR', help: 'a training run (its teacher is exported to DIR/teacher.onnx when missing or stale)' },
  model: { kind: 'string', placeholder: 'FILE.onnx', help: 'an exported model (dino export)' },
} as const;

/** Which images an evaluation uses; by default the run's own data (its config.json records it). */
const DATA_OPTIONS = {
  dataset: { kind: 'choice', choices: ['fmnist'], help: 'evaluate on Fashion-MNIST (test split against train split) instead of the run\'s own data' },
  data: { kind: 'string', placeholder: 'FOLDER', help: 'evaluate on this image folder (one subfolder per class) instead of the run\'s own data' },
  val: { kind: 'string', placeholder: 'FOLDER', help: 'images to evaluate, against the whole data folder as the memory / training set (default: the held-out split: test/ or val/ beside train/; for a run, the files dino train --holdout kept out; for --data FOLDER, every 10th image of each class)' },
  'skip-bad-images': { kind: 'flag', help: 'leave out images that cannot be decoded instead of stopping' },
  'limit-train': { kind: 'int', min: 1, placeholder: 'N', help: 'evenly spaced N train images (default: all)' },
  'limit-test': { kind: 'int', min: 1, placeholder: 'N', help: 'evenly spaced N test images (default: all)' },
} as const;

/** The evaluation-data options of the library for these flags. */
function dataOptions(command: string, o: { dataset?: string | undefined; data?: string | undefined; val?: string | undefined; 'skip-bad-images': boolean; 'limit-train'?: number | undefined; 'limit-test'?: number | undefined }) {
  if (o.dataset !== undefined && o.data !== undefined) throw new UsageError('--dataset and --data both choose the data: give one', command);
  const dataset = o.data ?? o.dataset;
  return {
    ...(dataset !== undefined ? { dataset } : {}), ...(o.val !== undefined ? { val: o.val } : {}),
    skipBadImages: o['skip-bad-images'], log,
    ...(o['limit-train'] !== undefined ? { limitTrain: o['limit-train'] } : {}),
    ...(o['limit-test'] !== undefined ? { limitTest: o['limit-test'] } : {}),
  };
}

/** `--features`: precomputed features replace the model and data flags, which are then refused by name. */
function precomputed(command: string, o: Record<string, unknown>): { features: string; log: typeof log } {
  const clash = ['run', 'model', 'dataset', 'data', 'val', 'limit-train', 'limit-test', 'dump-features'].find((k) => o[k] !== undefined);
  if (clash !== undefined) throw new UsageError(`--features gives the features: --${clash} does not apply with it`, command);
  return { features: o['features'] as string, log };
}

export const featuresCommand = defineCommand(
  {
    name: 'features',
    summary: 'Frozen features of a dataset through a run\'s teacher or an exported model, written to a .safetensors or .npy file (rows in data order, with labels and files).',
    options: {
      ...MODEL_OPTIONS,
      dataset: { kind: 'choice', choices: ['fmnist'], help: 'Fashion-MNIST (its train split, then its test split) instead of the run\'s own data' },
      data: { kind: 'string', placeholder: 'FOLDER', help: 'this image folder (one subfolder per class) instead of the run\'s own data' },
      val: { kind: 'string', placeholder: 'FOLDER', help: 'a validation folder as the test split, against the data folder\'s training files (classes matched by name)' },
      'skip-bad-images': DATA_OPTIONS['skip-bad-images'],
      out: { kind: 'string', placeholder: 'FILE', help: 'output: FILE.safetensors (tensors features [N, D] and labels [N], metadata dino.features) or FILE.npy (with FILE.labels.npy and FILE.json); FILE.files.txt lists the file of each row for image folders (required)' },
      split: { kind: 'choice', choices: ['all', 'train', 'test'], default: 'all', help: 'which rows: the train split, the test split (held out, as knn and linear split the data), or both, train first' },
      'n-last-blocks': { kind: 'int', min: 1, default: 1, placeholder: 'N', help: 'concatenate the final-norm [CLS] of the last N blocks (as linear)' },
      'avgpool-patchtokens': { kind: 'flag', help: 'append the mean patch token of the last block (as linear)' },
      normalize: { kind: 'flag', help: 'L2-normalise each row (as DINO\'s eval_knn.py dumps them)' },
      batch: { kind: 'int', min: 1, default: 128, placeholder: 'N', help: 'images per batch' },
      ep: { kind: 'choice', choices: EXECUTION_PROVIDERS, default: 'cpu', help: 'ONNX Runtime execution provider' },
      threads: { kind: 'int', min: 0, placeholder: 'N', help: 'intra-op threads (default: one per core)' },
    },
    epilog: `Image folders are read batch by batch through DINO's eval transform at the model's size S (Resize(S * 256/224),
bicubic, then CenterCrop(S)); a model of another backbone (exportBackbone) works as a ViT's does.
Rows are written as they are computed into a file allocated at its final size; OUT.progress.json records the
rows done. Stopped (Ctrl-C, a killed job), the same command continues where it stopped, and the finished file is byte
for byte the one an uninterrupted run writes; run again on a finished file, it does nothing. Read a file with
numpy.load, or safetensors.numpy.load_file / safe_open (metadata: f.metadata()["dino.features"]).`,
  },
  async ({ options: o }): Promise<void> => {
    if (o.out === undefined) throw new UsageError('--out FILE.safetensors or FILE.npy is required', 'features');
    if (!/\.(safetensors|npy)$/i.test(o.out)) throw new UsageError(`--out ${o.out}: the file must end in .safetensors or .npy`, 'features');
    // Under mpirun / srun each process extracts its share of the rows (exports/evaluation/features.ts); rank 0 prints.
    const collective = await openCollective();
    if (collective.kind === 'mpi') abortOnUncaughtError(collective);
    const quiet = collective.rank !== 0;
    const controller = new AbortController();
    const onSigint = () => {
      controller.abort();
      log('\ninterrupt: finishing this batch and recording the progress (Ctrl-C again to stop at once)');
      process.once('SIGINT', () => process.exit(130));
    };
    process.once('SIGINT', onSigint);
    const bar = quiet ? { update: () => {}, done: () => {} } : progressBar('features');
    try {
      const r = await extractFeatureFile({
        ...modelSource('features', o), ...dataOptions('features', { ...o, 'limit-train': undefined, 'limit-test': undefined }),
        out: o.out, split: o.split as 'all' | 'train' | 'test', nLastBlocks: o['n-last-blocks'], avgpoolPatchtokens: o['avgpool-patchtokens'],
        normalize: o.normalize, batch: o.batch, ep: o.ep, ...(o.threads !== undefined ? { threads: o.threads } : {}),
        signal: controller.signal, progress: bar.update, ...(collective.size > 1 ? { collective } : {}),
      }).catch((e: unknown) => {
        if (collective.size === 1) throw e;
        return import('./errors.ts').then(({ wordError }) => collective.abort(1, `error: ${wordError(e)}`));
      });
      bar.done();
      collective.finalize();
      if (quiet) return;
      if (!r.finished) {
        console.log(`stopped at ${r.completed}/${r.info.count} rows of ${r.out}: run the same command again to continue`);
        process.exitCode = 130;
        return;
      }
      const resumed = r.resumedAt === r.info.count ? ' (already complete)' : r.resumedAt > 0 ? ` (continued from row ${r.resumedAt})` : '';
      console.log(`wrote ${r.out}: ${r.info.count} rows of ${r.info.dim} (${r.info.splits.map((s) => `${s.name} ${s.count}`).join(', ')})${resumed} in ${r.seconds.toFixed(1)} s`);
      if (r.index) console.log(`wrote ${r.index}: the rows of all ${collective.size} shards (${extname(o.out)} files beside it)`);
    } finally {
      process.removeListener('SIGINT', onSigint);
    }
  },
);

/** A progress line on stderr: redrawn in place on a terminal, a line every 10 s otherwise. */
function progressBar(what: string): { update: (done: number, total: number) => void; done: () => void } {
  const t0 = performance.now();
  let started: number | undefined, lastLine = 0, drawn = false;
  return {
    update: (done, total) => {
      const now = performance.now();
      started ??= done;
      const rate = ((done - started) * 1000) / Math.max(now - t0, 1);
      const eta = rate > 0 ? `, ${Math.ceil((total - done) / rate)} s left` : '';
      const width = 30, filled = Math.round((width * done) / Math.max(total, 1));
      const text = `${what} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} (${rate.toFixed(0)} images/s${eta})`;
      if (process.stderr.isTTY) {
        process.stderr.write(`\r${text}`);
        drawn = true;
      } else if (now - lastLine > 10_000 || done === total) {
        lastLine = now;
        log(text);
      }
    },
    done: () => void (drawn && process.stderr.write('\n')),
  };
}

const FORMATS = ['onnx', 'safetensors', 'pth', 'hf'] as const;

export const exportCommand = defineCommand(
  {
    name: 'export',
    summary: 'Export a teacher (a run\'s, or imported weights) as an inference ONNX model, or its backbone weights for PyTorch.',
    options: {
      run: { kind: 'string', placeholder: 'DIR', help: 'the run whose teacher to export' },
      student: { kind: 'flag', help: 'export the student instead of the teacher' },
      preset: { kind: 'string', placeholder: 'NAME', help: 'the architecture of --weights (vit_small, vit_base_p8, fmnist-tiny6, ...)' },
      weights: { kind: 'string', placeholder: 'FILE', help: 'weights to export (.pth, .safetensors, .bin; DINO, timm or Hugging Face names)' },
      out: { kind: 'string', placeholder: 'FILE', help: 'output file (default DIR/teacher.<format> for --run; a folder for hf, default DIR/teacher-hf)' },
      format: { kind: 'choice', choices: FORMATS, help: 'onnx (inference model), safetensors or pth (the backbone with DINO\'s keys, for torch.load + load_state_dict), hf (a folder transformers.js loads: config.json, preprocessor_config.json, onnx/model.onnx); default from --out\'s extension, else onnx' },
      'image-size': { kind: 'int', min: 1, placeholder: 'N', help: 'a fixed input size (onnx, hf); default any H, W multiple of the patch' },
      'preprocessor-config': { kind: 'flag', help: 'also write a Hugging Face preprocessor_config.json beside the .onnx (resize + rescale to [0, 1]; the graph normalises)' },
    },
    epilog: `The ONNX model takes images [N, C, H, W] in [0, 1] and returns features [N, D], patch_tokens [N, P, D] and
cls_attention [N, heads, P]. The .pth / .safetensors files hold the backbone under DINO's vision_transformer.py keys:
  model = vits.vit_small(patch_size=16); model.load_state_dict(torch.load('teacher.pth', weights_only=True))
(the export prints these lines for the run's own backbone, with img_size when it is not 224).
A backbone with a convolutional stem (backbone.convStem, as fmnist-quick and fmnist-long) also holds patch_embed.stem.<i>.weight|bias
and a patch embedding over the stem's channels, which vision_transformer.py does not define.
A run of a ResNet (--arch resnet50) or a registered backbone exports its features model only (--format onnx:
images -> features [N, D], BatchNorm with its running statistics); patch tokens, attention, hf and serve are ViT-only.`,
  },
  async ({ options: o }) => {
    if ((o.run === undefined) === (o.weights === undefined)) throw new UsageError('give --run DIR, or --preset NAME with --weights FILE', 'export');
    // The format follows --out's extension (.pt is PyTorch's too); another extension needs --format.
    const ext = o.out !== undefined ? extname(o.out).toLowerCase() : undefined;
    const fromExt = ext === '.onnx' ? 'onnx' : ext !== undefined && o.out !== undefined ? weightFormatFor(o.out) : undefined;
    if (o.out !== undefined && fromExt === undefined && o.format === undefined) {
      throw new UsageError(`--out ${o.out}: name the format with the extension (.onnx, .pth or .pt, .safetensors) or with --format`, 'export');
    }
    const format = o.format ?? fromExt ?? 'onnx';
    if (o.format !== undefined && fromExt !== undefined && fromExt !== o.format) throw new UsageError(`--format ${o.format} but --out ${o.out} ends in ${ext} (a ${fromExt} file)`, 'export');
    const network = o.student ? 'student' : 'teacher';
    const out = o.out ?? (o.run !== undefined ? join(o.run, format === 'hf' ? `${network}-hf` : `${network}.${format}`) : undefined);
    if (!out) throw new UsageError(`--out ${format === 'hf' ? 'FOLDER' : 'FILE'} is required with --weights`, 'export');
    if (o.run !== undefined) runBackboneKind('export', o.run);
    const runConfig = o.run !== undefined ? new RunFolder(o.run).readConfig() : undefined;
    if (runConfig && runConfig.backbone.kind !== 'vit') {
      // A ResNet or a registered backbone: its features model (exports/export/backbone.ts), the export they have.
      const kind = runConfig.backbone.kind;
      if (format !== 'onnx') throw new UsageError(`--run ${o.run} trains a ${kind} backbone: it exports as --format onnx (its features model); ${format} is written for ViTs only`, 'export');
      if (o['preprocessor-config']) throw new UsageError(`--preprocessor-config is written for ViT exports; --run ${o.run} trains a ${kind} backbone`, 'export');
      const r = exportBackbone({ config: runConfig, checkpoint: checkpointPath(o.run!), network, out, ...(o['image-size'] !== undefined ? { imageSize: o['image-size'] } : {}) });
      console.log(`wrote ${r.out} (${(r.bytes / 1e6).toFixed(1)} MB): the ${kind} ${network}'s features model, images [N, ${r.info.backbone.inChans}, ${r.info.imageSize[0]}, ${r.info.imageSize[1]}] in [0, 1] -> features [N, ${r.info.featureDim}] (dino features, dino knn read it). ` +
        'Attention maps, patch tokens, dino attention and dino serve are ViT-only.');
      return;
    }
    if (format === 'hf') {
      if (o.weights !== undefined && o.preset === undefined) throw new UsageError('--weights needs --preset NAME (the architecture)', 'export');
      if (o['preprocessor-config']) throw new UsageError('--preprocessor-config is for --format onnx: the hf folder always has its preprocessor_config.json', 'export');
      const r = exportHf({
        out,
        ...(o.run !== undefined ? { run: o.run } : {}), ...(o.student ? { student: true } : {}),
        ...(o.preset !== undefined ? { preset: o.preset } : {}), ...(o.weights !== undefined ? { weights: o.weights } : {}),
        ...(o['image-size'] !== undefined ? { imageSize: o['image-size'] } : {}),
      });
      return void console.log(`wrote ${r.out} (config.json, preprocessor_config.json, onnx/model.onnx: ${(r.bytes / 1e6).toFixed(1)} MB) in ${r.seconds.toFixed(1)} s`);
    }
    if (format !== 'onnx') {
      if (o['image-size'] !== undefined || o['preprocessor-config']) throw new UsageError(`--${o['image-size'] !== undefined ? 'image-size' : 'preprocessor-config'} applies to --format onnx`, 'export');
      const r = o.run !== undefined
        ? writeTeacherWeights(o.run, out, format, { network })
        : { path: out, bytes: writeWeights(out, readDinoWeights(o.weights!, network).backbone, format) };
      console.log(`wrote ${r.path} (${(r.bytes / 1e6).toFixed(1)} MB, ${format})`);
      // The run's architecture is known (its config); weights given with --weights are copied as they are.
      const backbone = o.run !== undefined ? readRunConfig(o.run).backbone : undefined;
      if (backbone) console.log(`load it in PyTorch:\n${pytorchLoadLines(backbone, r.path).map((l) => `  ${l}`).join('\n')}`);
      return;
    }
    if (o.weights !== undefined && o.preset === undefined) throw new UsageError('--weights needs --preset NAME (the architecture)', 'export');
    const r = exportTeacher({
      out,
      ...(o.run !== undefined ? { run: o.run } : {}), ...(o.student ? { student: true } : {}),
      ...(o.preset !== undefined ? { preset: o.preset } : {}), ...(o.weights !== undefined ? { weights: o.weights } : {}),
      ...(o['image-size'] !== undefined ? { imageSize: o['image-size'] } : {}),
      ...(o['preprocessor-config'] ? { preprocessorConfig: true } : {}),
    });
    console.log(`wrote ${r.out} (${(r.bytes / 1e6).toFixed(1)} MB) in ${r.seconds.toFixed(1)} s${r.preprocessorConfig ? `; ${r.preprocessorConfig}` : ''}`);
  },
);

export const knnCommand = defineCommand(
  {
    name: 'knn',
    summary: 'Weighted k-NN evaluation (DINO\'s eval_knn.py) of a run or an exported model: test images classified by their nearest train images.',
    options: {
      ...MODEL_OPTIONS, ...DATA_OPTIONS,
      'nb-knn': { kind: 'ints', min: 1, default: [10, 20, 100, 200], placeholder: 'K,K,...', help: 'numbers of nearest neighbours (DINO\'s --nb_knn)' },
      temperature: { kind: 'number', min: 0, exclusiveMin: true, default: 0.07, help: 'temperature of the exp(similarity / T) vote weights' },
      'dump-features': { kind: 'string', placeholder: 'DIR', help: 'also write the L2-normalised train and test features with their labels to DIR/train.safetensors and DIR/test.safetensors (DINO\'s --dump_features)' },
      features: { kind: 'string', placeholder: 'FILE|DIR', help: 'precomputed features instead of --run/--model and data: a dino features file with train and test splits (--split all), or a --dump-features folder (DINO\'s --load_features)' },
      json: { kind: 'flag', help: 'print the result as JSON' },
    },
  },
  async ({ options: o }) => {
    const r = await knnEvaluate({
      ...(o.features !== undefined ? precomputed('knn', o) : { ...modelSource('knn', o), ...dataOptions('knn', o) }),
      ks: o['nb-knn'], temperature: o.temperature, ...(o['dump-features'] !== undefined ? { dumpFeatures: o['dump-features'] } : {}),
    });
    console.log(o.json ? r.json : r.table);
  },
);

export const linearCommand = defineCommand(
  {
    name: 'linear',
    summary: 'Linear probe on frozen features (trained with compiled step graphs).',
    options: {
      ...MODEL_OPTIONS, ...DATA_OPTIONS,
      'n-last-blocks': { kind: 'int', min: 1, default: 1, placeholder: 'N', help: 'concatenate the final-norm [CLS] of the last N blocks (DINO\'s --n_last_blocks; the paper: 4 for ViT-S)' },
      'avgpool-patchtokens': { kind: 'flag', help: 'append the mean patch token of the last block (the paper\'s ViT-B setting, with --n-last-blocks 1)' },
      epochs: { kind: 'int', min: 1, help: 'passes over the train features (default 20)' },
      features: { kind: 'string', placeholder: 'FILE|DIR', help: 'precomputed features instead of --run/--model and data: a dino features file with train and test splits (--split all), or a knn --dump-features folder' },
      json: { kind: 'flag', help: 'print the result as JSON' },
    },
    epilog: `Departures from DINO's eval_linear.py: features are computed once, without augmentation (DINO re-crops every
epoch), and standardised per dimension; 20 epochs of SGD (momentum 0.9, lr 0.1 per 256, cosine per step) instead of
100 at lr 0.001; one seed, the final accuracy reported (DINO reports the best epoch).`,
  },
  async ({ options: o }) => {
    if (o.features !== undefined && (o['n-last-blocks'] !== 1 || o['avgpool-patchtokens'])) {
      throw new UsageError('--n-last-blocks and --avgpool-patchtokens choose the feature when it is extracted: pass them to dino features instead of --features', 'linear');
    }
    requireViTRun('linear', o.features === undefined ? o.run : undefined); // the probe reads a ViT export; other runs go through dino features
    const r = await linearProbe({
      ...(o.features !== undefined ? precomputed('linear', o) : { ...modelSource('linear', o), ...dataOptions('linear', o), nLastBlocks: o['n-last-blocks'], avgpoolPatchtokens: o['avgpool-patchtokens'] }),
      ...(o.epochs !== undefined ? { epochs: o.epochs } : {}),
    });
    console.log(o.json ? r.json : r.summary);
  },
);

export const attentionCommand = defineCommand(
  {
    name: 'attention',
    summary: 'Per-head [CLS] attention maps of an image as PNGs, with the masks that keep a share of the attention mass.',
    positionals: [{ name: 'IMAGE', help: 'a PNG, JPEG, WebP, ... image' }],
    options: {
      ...MODEL_OPTIONS,
      out: { kind: 'string', default: 'attention', placeholder: 'DIR', help: 'output folder' },
      threshold: { kind: 'number', min: 0, max: 1, default: 0.6, help: 'attention mass the masks keep' },
    },
  },
  async ({ options: o, positionals }) => {
    requireViTRun('attention', o.run);
    const model = runModel({ ...modelSource('attention', o), log });
    const r = await attentionMaps({ image: positionals[0]!, model, out: o.out, threshold: o.threshold });
    console.log(r.files.join('\n'));
  },
);

export const serveCommand = defineCommand(
  {
    name: 'serve',
    summary: 'Browser demo on 127.0.0.1: attention maps and nearest neighbours computed in the browser (onnxruntime-web).',
    options: {
      ...MODEL_OPTIONS,
      dataset: { kind: 'string', placeholder: 'fmnist|FOLDER', help: 'images to search for neighbours (default: the run\'s own data)' },
      port: { kind: 'int', min: 0, max: 65535, placeholder: 'N', help: 'port (default: a free one)' },
    },
  },
  async ({ options: o }) => {
    requireViTRun('serve', o.run);
    const s = await serve({ ...modelSource('serve', o), ...(o.dataset !== undefined ? { dataset: o.dataset } : {}), log, ...(o.port !== undefined ? { port: o.port } : {}) });
    console.log(`serving on ${s.url} (Ctrl-C to stop)`);
  },
);

export const reportCommand = defineCommand(
  {
    name: 'report',
    summary: 'Write DIR/report.html: training curves, the k-NN table, attention maps.',
    options: {
      run: { kind: 'string', placeholder: 'DIR', help: 'the run folder (required)' },
      data: { kind: 'string', placeholder: 'FOLDER', help: 'images for the attention maps (default: the run\'s own data)' },
    },
  },
  async ({ options: o }) => {
    if (o.run === undefined) throw new UsageError('--run DIR is required', 'report');
    console.log(await writeReport({ run: o.run, log, ...(o.data !== undefined ? { dataset: o.data } : {}) }));
  },
);
