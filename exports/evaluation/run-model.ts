/** The model an evaluation runs: a given .onnx file, or a run's teacher, exported when missing or stale. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { RunFolder, runFile } from '../../runtime/dino/run-folder.ts';
import { NotViTRunError, checkpointPath, exportTeacher } from '../export/teacher.ts';
import { exportBackbone } from '../export/backbone.ts';

/**
 * The model to evaluate: `model`, or the run's teacher, exported when missing or older than the checkpoint: to
 * DIR/teacher.onnx, or with `intermediate: n` (the `block_cls` / `patch_mean` outputs the linear probe reads) to
 * DIR/teacher.linear-n<n>.onnx, so the default export stays as it is.
 */
export function runModel(opts: { run?: string; model?: string; intermediate?: number; log?: (msg: string) => void }): string {
  if (opts.model) {
    if (!fs.existsSync(opts.model)) throw new Error(`${opts.model}: no such model file; export one with npx dino export --run DIR --out FILE.onnx`);
    return opts.model;
  }
  if (!opts.run) throw new Error('pass a run folder (--run DIR) or an exported model (--model FILE.onnx)');
  const n = opts.intermediate;
  const out = n === undefined ? runFile(opts.run, 'teacher') : path.join(opts.run, `teacher.linear-n${n}.onnx`);
  const ckpt = checkpointPath(opts.run);
  if (!fs.existsSync(out) || fs.statSync(out).mtimeMs < fs.statSync(ckpt).mtimeMs) {
    const cfg = new RunFolder(opts.run).readConfig();
    opts.log?.(`exporting the teacher of ${opts.run} to ${out}`);
    if (cfg.backbone.kind === 'vit') exportTeacher({ run: opts.run, out, ...(n !== undefined ? { intermediate: n } : {}) });
    else if (n !== undefined) throw new NotViTRunError(opts.run, cfg.backbone.kind); // intermediate [CLS] is a ViT's
    else exportBackbone({ config: cfg, checkpoint: ckpt, out }); // its features model (a ResNet's, a registered backbone's)
  }
  return out;
}
