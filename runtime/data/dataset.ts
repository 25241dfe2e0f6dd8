/**
 * The in-memory image dataset every loader in runtime/data produces and the multi-crop loader consumes.
 *
 * Pixels are stored as bytes (0-255), channel-first (N, C, H, W), all images of a dataset the same size: every
 * source is 8-bit, and bytes take a quarter of float32's memory (Fashion-MNIST: 52 MiB instead of 209 MiB, held
 * by every training process). Consumers read float32 in [0, 1] = byte / 255 through {@link gatherImages}.
 * Normalisation (mean/std) is not applied here: it is the last step of augmentation (DINO's `Normalize`).
 */

/** One split (train or test) of a dataset. */
export interface ImageSet {
  /** Number of images. */
  readonly count: number;
  /** `count * channels * height * width` bytes (0-255), image-major then channel-first (N, C, H, W). */
  readonly pixels: Uint8Array;
  /** One class index per image, in `[0, classes.length)`, or -1 when the image has no label. */
  readonly labels: Int32Array;
}

/** A dataset: two splits of equally sized images plus the class names that labels index into. */
export interface Dataset {
  /** Short human-readable name, e.g. `fashion-mnist` or the folder's base name. */
  readonly name: string;
  /** 1 (grayscale) or 3 (RGB). */
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  readonly train: ImageSet;
  readonly test: ImageSet;
  /** Class names; `labels` index into this list. Empty when no image is labelled. */
  readonly classes: string[];
}

/** Values per image: `channels * height * width`. */
export function imageSize(dataset: Pick<Dataset, 'channels' | 'height' | 'width'>): number {
  return dataset.channels * dataset.height * dataset.width;
}

/**
 * A view of image `index` of `set`: its bytes (no copy).
 * @throws RangeError when `index` is outside `[0, set.count)`.
 */
export function imageAt(
  dataset: Pick<Dataset, 'channels' | 'height' | 'width'>,
  set: ImageSet,
  index: number,
): Uint8Array {
  if (!Number.isInteger(index) || index < 0 || index >= set.count) {
    throw new RangeError(`image index ${index} is outside [0, ${set.count})`);
  }
  const size = imageSize(dataset);
  return set.pixels.subarray(index * size, (index + 1) * size);
}

/**
 * Images `indices` of `set` as float32 in [0, 1] (byte / 255), packed (N, C, H, W) into `out` (allocated when
 * not given; it must hold `indices.length` images).
 */
export function gatherImages(
  dataset: Pick<Dataset, 'channels' | 'height' | 'width'>,
  set: Pick<ImageSet, 'count' | 'pixels'>,
  indices: ArrayLike<number>,
  out?: Float32Array,
): Float32Array {
  const size = imageSize(dataset);
  const result = out ?? new Float32Array(indices.length * size);
  if (result.length < indices.length * size) throw new RangeError(`output holds ${result.length} values, ${indices.length} images need ${indices.length * size}`);
  for (let i = 0; i < indices.length; i++) {
    const index = indices[i]!;
    if (!Number.isInteger(index) || index < 0 || index >= set.count) throw new RangeError(`image index ${index} is outside [0, ${set.count})`);
    const src = index * size, dst = i * size;
    for (let k = 0; k < size; k++) result[dst + k] = set.pixels[src + k]! / 255;
  }
  return result;
}

/**
 * Checks that a dataset is internally consistent (array lengths match `count` and the image size,
 * labels are -1 or valid class indices) and returns it; throws an Error naming the first problem.
 */
export function checkDataset(dataset: Dataset): Dataset {
  const { channels, height, width } = dataset;
  if (channels !== 1 && channels !== 3) throw new Error(`${dataset.name}: channels must be 1 or 3, got ${channels}`);
  if (!(height > 0 && width > 0)) throw new Error(`${dataset.name}: image size must be positive, got ${height}x${width}`);
  const size = imageSize(dataset);
  for (const [splitName, set] of [['train', dataset.train], ['test', dataset.test]] as const) {
    if (set.pixels.length !== set.count * size) {
      throw new Error(`${dataset.name}/${splitName}: ${set.pixels.length} pixel values for ${set.count} images of ${size}`);
    }
    if (set.labels.length !== set.count) {
      throw new Error(`${dataset.name}/${splitName}: ${set.labels.length} labels for ${set.count} images`);
    }
    for (let i = 0; i < set.count; i++) {
      const label = set.labels[i]!;
      if (label < -1 || label >= dataset.classes.length) {
        throw new Error(`${dataset.name}/${splitName}: image ${i} has label ${label}, outside -1..${dataset.classes.length - 1}`);
      }
    }
  }
  return dataset;
}

/**
 * A validation split carved from a training split, for model selection that never sees the test split: the last
 * `perClass` images of each class (in the set's order) are held out, the rest stay. Both parts keep the set's order
 * and live in shared memory (loader workers read them). Unlabelled images (-1) stay in `rest`.
 * @throws Error when some class has `perClass` images or fewer (nothing would be left to train on).
 */
export function holdOutPerClass(
  dataset: Pick<Dataset, 'channels' | 'height' | 'width' | 'classes'>,
  set: ImageSet,
  perClass: number,
): { rest: ImageSet; heldOut: ImageSet } {
  if (!(Number.isInteger(perClass) && perClass > 0)) throw new Error(`perClass must be a positive integer, got ${perClass}`);
  const classes = dataset.classes.length;
  const seen = new Array<number>(classes).fill(0);
  for (const l of set.labels) if (l >= 0) seen[l]!++;
  for (let c = 0; c < classes; c++) {
    if (seen[c]! <= perClass) throw new Error(`class ${c} has ${seen[c]} images, cannot hold out ${perClass}`);
  }
  // Walk backwards so "the last perClass of each class" needs one pass.
  const held = new Uint8Array(set.count);
  const taken = new Array<number>(classes).fill(0);
  for (let i = set.count - 1; i >= 0; i--) {
    const l = set.labels[i]!;
    if (l >= 0 && taken[l]! < perClass) { held[i] = 1; taken[l]!++; }
  }
  const size = imageSize(dataset);
  const pick = (keep: 0 | 1): ImageSet => {
    let count = 0;
    for (let i = 0; i < set.count; i++) if (held[i] === keep) count++;
    const pixels = new Uint8Array(new SharedArrayBuffer(count * size));
    const labels = new Int32Array(count);
    let dst = 0;
    for (let i = 0; i < set.count; i++) {
      if (held[i] !== keep) continue;
      pixels.set(set.pixels.subarray(i * size, (i + 1) * size), dst * size);
      labels[dst++] = set.labels[i]!;
    }
    return { count, pixels, labels };
  };
  return { rest: pick(0), heldOut: pick(1) };
}
