/**
 * ViT weights saved under other libraries' names, renamed to DINO's `vision_transformer.py` state_dict keys
 * (the names this project's ViT uses). Pure functions over name -> tensor maps; reading files is runtime/io's job.
 *
 * Conventions:
 * - `dino`: DINO's own keys (`cls_token`, `pos_embed`, `patch_embed.proj.weight`, `blocks.N.attn.qkv.weight`, ...).
 * - `timm`: timm's VisionTransformer (`vit_small_patch16_224.dino`) uses the same keys; its classifier `head.*`
 *   (absent with num_classes=0) and an empty-pooling `fc_norm` are extras, dropped.
 * - `hf`: Hugging Face transformers `ViTModel` (`facebook/dino-vits16`): `embeddings.*`, `encoder.layer.N.*`,
 *   `layernorm.*`, optionally under `vit.` (ViTForImageClassification) with `pooler.*` / `classifier.*` dropped.
 *   Separate query/key/value projections are concatenated into DINO's fused `qkv` in q, k, v order along the
 *   output axis: DINO's forward splits qkv's output as [3, heads, head_dim], so rows 0..D-1 are q, D..2D-1 k.
 */

export type WeightDType = 'float32' | 'float64' | 'int64' | 'int32' | 'uint8' | 'bool';
export type WeightData = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;

/** A host tensor (structurally runtime/io's NamedTensor). */
export type WeightTensor = { dtype: WeightDType; shape: number[]; data: WeightData };

export type WeightConvention = 'dino' | 'timm' | 'hf';

export interface RenamedWeights<T extends WeightTensor> {
  /** Tensors under DINO's keys, in DINO's state_dict order. */
  readonly tensors: Map<string, T | WeightTensor>;
  readonly convention: WeightConvention;
  /** Keys of the input that were left out on purpose (classifier, pooler, ...). */
  readonly dropped: string[];
}

const BLOCK_PARTS = [
  'norm1.weight', 'norm1.bias', 'attn.qkv.weight', 'attn.qkv.bias', 'attn.proj.weight', 'attn.proj.bias',
  'norm2.weight', 'norm2.bias', 'mlp.fc1.weight', 'mlp.fc1.bias', 'mlp.fc2.weight', 'mlp.fc2.bias',
] as const;
const HEAD_KEYS = ['cls_token', 'pos_embed', 'patch_embed.proj.weight', 'patch_embed.proj.bias'] as const;
const TAIL_KEYS = ['norm.weight', 'norm.bias'] as const;

/** Position of a DINO ViT key in DINO's state_dict (parameters in module registration order); undefined if not one. */
export function dinoViTKeyRank(key: string): number | undefined {
  const head = (HEAD_KEYS as readonly string[]).indexOf(key);
  if (head >= 0) return head;
  const tail = (TAIL_KEYS as readonly string[]).indexOf(key);
  if (tail >= 0) return Number.MAX_SAFE_INTEGER - TAIL_KEYS.length + tail;
  const m = /^blocks\.(\d+)\.(.+)$/.exec(key);
  if (!m) return undefined;
  const part = (BLOCK_PARTS as readonly string[]).indexOf(m[2]!);
  return part < 0 ? undefined : HEAD_KEYS.length + Number(m[1]) * BLOCK_PARTS.length + part;
}

export function isDinoViTKey(key: string): boolean {
  return dinoViTKeyRank(key) !== undefined;
}

/** The map's entries in DINO's state_dict order (other keys after them, in their order). */
export function sortDinoViTKeys<T>(tensors: ReadonlyMap<string, T>): Map<string, T> {
  const ranked = [...tensors.keys()].map((key, index) => ({ key, index, rank: dinoViTKeyRank(key) ?? Infinity }));
  ranked.sort((a, b) => a.rank - b.rank || a.index - b.index);
  return new Map(ranked.map(({ key }) => [key, tensors.get(key)!]));
}

// ---- Hugging Face ViTModel -----------------------------------------------------------------------------

const HF_RENAMES: readonly [RegExp, string][] = [
  [/^embeddings\.cls_token$/, 'cls_token'],
  [/^embeddings\.position_embeddings$/, 'pos_embed'],
  [/^embeddings\.patch_embeddings\.projection\.(weight|bias)$/, 'patch_embed.proj.$1'],
  [/^encoder\.layer\.(\d+)\.layernorm_before\.(weight|bias)$/, 'blocks.$1.norm1.$2'],
  [/^encoder\.layer\.(\d+)\.attention\.output\.dense\.(weight|bias)$/, 'blocks.$1.attn.proj.$2'],
  [/^encoder\.layer\.(\d+)\.layernorm_after\.(weight|bias)$/, 'blocks.$1.norm2.$2'],
  [/^encoder\.layer\.(\d+)\.intermediate\.dense\.(weight|bias)$/, 'blocks.$1.mlp.fc1.$2'],
  [/^encoder\.layer\.(\d+)\.output\.dense\.(weight|bias)$/, 'blocks.$1.mlp.fc2.$2'],
  [/^layernorm\.(weight|bias)$/, 'norm.$1'],
];
const HF_QKV = /^encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)$/;
/** Not part of DINO's backbone: the pooler (tanh dense on [CLS]), the classifier, the masked-image-modeling token. */
const HF_DROPPED = /^(pooler\.|classifier\.|embeddings\.mask_token$)/;

const TIMM_DROPPED = /^(head\.(weight|bias)|fc_norm\.(weight|bias))$/;

function looksHf(key: string): boolean {
  return /^(vit\.)?(embeddings\.|encoder\.layer\.|layernorm\.)/.test(key);
}

/** Which library's names the keys use; `module.` / `backbone.` prefixes should be stripped first. */
export function detectConvention(keys: Iterable<string>): WeightConvention {
  const list = [...keys];
  if (list.some(looksHf)) return 'hf';
  if (list.some((k) => TIMM_DROPPED.test(k))) return 'timm';
  return 'dino';
}

function describeShape(t: WeightTensor | undefined): string {
  return t ? `[${t.shape.join(', ')}]` : 'missing';
}

/** q, k, v concatenated along dim 0 (the output features of a Linear weight [out, in] or a bias [out]). */
function concatQkv(layer: string, kind: string, q: WeightTensor | undefined, k: WeightTensor | undefined, v: WeightTensor | undefined): WeightTensor {
  if (!q || !k || !v) {
    throw new Error(`layer ${layer}: attention ${kind} needs query, key and value (query ${describeShape(q)}, key ${describeShape(k)}, value ${describeShape(v)})`);
  }
  const same = (a: WeightTensor) => a.dtype === q.dtype && a.shape.length === q.shape.length && a.shape.every((d, i) => d === q.shape[i]);
  if (!same(k) || !same(v) || q.shape.length === 0) {
    throw new Error(`layer ${layer}: attention query/key/value ${kind} must have one shape and dtype (query ${q.dtype}${describeShape(q)}, key ${k.dtype}${describeShape(k)}, value ${v.dtype}${describeShape(v)})`);
  }
  const n = q.data.length;
  const Ctor = q.data.constructor as new (length: number) => WeightData;
  const data = new Ctor(3 * n);
  (data as Float32Array).set(q.data as Float32Array, 0);
  (data as Float32Array).set(k.data as Float32Array, n);
  (data as Float32Array).set(v.data as Float32Array, 2 * n);
  return { dtype: q.dtype, shape: [3 * q.shape[0]!, ...q.shape.slice(1)], data };
}

function unknownKeysError(convention: WeightConvention, unknown: readonly string[]): Error {
  const shown = unknown.slice(0, 20).map((k) => `  - ${k}`).join('\n');
  const more = unknown.length > 20 ? `\n  ... and ${unknown.length - 20} more` : '';
  const expected = {
    dino: 'DINO vision_transformer.py keys (cls_token, pos_embed, patch_embed.proj.*, blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*, norm.*)',
    timm: 'timm VisionTransformer keys (the same as DINO, plus head.* / fc_norm.*)',
    hf: 'Hugging Face ViTModel keys (embeddings.*, encoder.layer.N.*, layernorm.*, optional vit. prefix, pooler.* / classifier.*)',
  }[convention];
  return new Error(`${unknown.length} weight name(s) are not ${expected}; is this a ViT backbone?\n${shown}${more}`);
}

/**
 * The ViT backbone weights of `tensors` under DINO's keys. The convention is detected from the keys unless given.
 * Throws listing every key it cannot place (and, for `hf`, any incomplete query/key/value triple).
 */
export function toDinoViTNames<T extends WeightTensor>(tensors: ReadonlyMap<string, T>, convention: WeightConvention = detectConvention(tensors.keys())): RenamedWeights<T> {
  const out = new Map<string, T | WeightTensor>();
  const dropped: string[] = [];
  const unknown: string[] = [];
  const put = (from: string, to: string, t: T | WeightTensor) => {
    if (out.has(to)) throw new Error(`two weights map to "${to}" (the second is "${from}")`);
    out.set(to, t);
  };

  if (convention !== 'hf') {
    for (const [key, t] of tensors) {
      if (isDinoViTKey(key)) put(key, key, t);
      else if (convention === 'timm' && TIMM_DROPPED.test(key)) dropped.push(key);
      else unknown.push(key);
    }
    // An average-pooling timm model normalises with fc_norm instead of norm: dropping it would change the model.
    if (convention === 'timm' && dropped.some((k) => k.startsWith('fc_norm.')) && !out.has('norm.weight')) {
      throw new Error('these timm weights use fc_norm (global average pooling) and have no norm.*: DINO\'s ViT takes the final-norm [CLS] token, so they are a different model');
    }
  } else {
    const qkv = new Map<string, Map<string, T>>(); // "layer/kind" -> q|k|v -> tensor
    for (const [raw, t] of tensors) {
      const key = raw.startsWith('vit.') ? raw.slice('vit.'.length) : raw;
      if (HF_DROPPED.test(key) || HF_DROPPED.test(raw)) {
        dropped.push(raw);
        continue;
      }
      const m = HF_QKV.exec(key);
      if (m) {
        const slot = `${m[1]}/${m[3]}`;
        if (!qkv.has(slot)) qkv.set(slot, new Map());
        qkv.get(slot)!.set(m[2]!, t);
        continue;
      }
      const rule = HF_RENAMES.find(([pattern]) => pattern.test(key));
      if (rule) put(raw, key.replace(rule[0], rule[1]), t);
      else unknown.push(raw);
    }
    if (unknown.length === 0) {
      for (const [slot, parts] of qkv) {
        const [layer, kind] = slot.split('/') as [string, string];
        put(`encoder.layer.${layer}.attention.attention.*.${kind}`, `blocks.${layer}.attn.qkv.${kind}`, concatQkv(layer, kind, parts.get('query'), parts.get('key'), parts.get('value')));
      }
    }
  }
  if (unknown.length > 0) throw unknownKeysError(convention, unknown);
  return { tensors: sortDinoViTKeys(out), convention, dropped };
}
