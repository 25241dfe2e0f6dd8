/**
 * One reader for model weights in a file, for every user (`dino train --init`, `dino export --weights`, run
 * folders): the DINO backbone and head tensors by DINO name, whatever wrapped them.
 *
 * Accepted: a PyTorch `.pth` / `.pt` / `.ckpt` (full DINO training checkpoint, `{state_dict|model: ...}`, or a
 * plain state dict) and `.safetensors` (a dino-ts checkpoint with `teacher.*` / `student.*` state, or a flat
 * state dict). Both go through `extractStateDict`, so the same rules hold for both: the `teacher` or `student`
 * network of a checkpoint holding both, `module.` prefixes (DistributedDataParallel) stripped, `backbone.` /
 * `head.` split, keys with neither prefix in the backbone. ViT backbones saved under Hugging Face (`facebook/dino-vits16`,
 * also as `pytorch_model.bin`) or timm names are renamed to DINO's (models/weight-names.ts); their classifier heads
 * are no DINO head and are dropped.
 */
import * as path from 'node:path';
import { type DinoStateDict, extractStateDict, readPth } from './pth.ts';
import { type NamedTensor, readSafetensors } from './safetensors.ts';
import { detectConvention, toDinoViTNames } from '../../models/weight-names.ts';

export type { DinoStateDict } from './pth.ts';

/** Which network to take from a checkpoint that holds both; DINO evaluates the teacher. */
export type WeightsNetwork = 'teacher' | 'student';

const NETWORKS: readonly WeightsNetwork[] = ['teacher', 'student'];

export function readDinoWeights(file: string, network: WeightsNetwork = 'teacher'): DinoStateDict {
  const ext = path.extname(file).toLowerCase();
  let sd: DinoStateDict;
  if (ext === '.pth' || ext === '.pt' || ext === '.ckpt' || ext === '.bin') sd = extractStateDict(readPth(file), file, { prefer: network });
  else if (ext === '.safetensors') sd = extractStateDict(nestNetworks(readSafetensors(file).tensors), file, { prefer: network });
  else throw new Error(`${file}: unknown weights format "${ext || '(no extension)'}"; pass a .safetensors or PyTorch .pth file`);
  const convention = detectConvention([...sd.backbone.keys(), ...[...sd.head.keys()].map((k) => `head.${k}`)]);
  if (convention === 'dino') return sd;
  try {
    return { backbone: toDinoViTNames(sd.backbone, convention).tensors as Map<string, NamedTensor>, head: new Map() };
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`);
  }
}

/**
 * A flat safetensors map shaped as torch.save writes a DINO checkpoint: when any key starts with `teacher.` or
 * `student.`, those become nested dicts (the rest of a training checkpoint, `optim.*` and `center`, is no model
 * weight and is dropped); otherwise the map is a state dict as it is.
 */
function nestNetworks(tensors: Map<string, NamedTensor>): Map<string, unknown> {
  const split = new Map<WeightsNetwork, Map<string, NamedTensor>>();
  for (const [key, t] of tensors) {
    const net = NETWORKS.find((n) => key.startsWith(`${n}.`));
    if (!net) continue;
    if (!split.has(net)) split.set(net, new Map());
    split.get(net)!.set(key.slice(net.length + 1), t);
  }
  return split.size ? (split as Map<string, unknown>) : tensors;
}
